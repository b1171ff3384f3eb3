// throwaway: RSS of the dedupe memory per entry (not committed)
use mpgate::store::{Store, StoreConfig, StoredReply};
use std::sync::Arc;
fn rss() -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string() + " ")
        .collect()
}
fn main() {
    let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let mode = std::env::args().nth(2).unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("memprobe-{}", std::process::id()));
    let store = Store::open(&dir, StoreConfig::default()).unwrap();
    println!("open: {}", rss());
    let now = chrono::Utc::now().timestamp();
    for i in 0..n {
        let key = format!("o{:027}{}subscribe", i % 700, 1_700_000_000 + i);
        let body: Arc<str> = Arc::from(format!("<xml><ToUserName><![CDATA[o{:027}]]></ToUserName><FromUserName><![CDATA[gh_0123456789ab]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[欢迎关注！回复「课程」查看本周直播安排，回复「{}」获取资料 🎉]]></Content></xml>", i % 700, now, i % 37));
        store
            .dedupe_put(&key, &StoredReply { at: now, body })
            .unwrap();
        if i % 3300 == 3299 && mode != "noflush" {
            store.flush_dedupe().unwrap();
        }
        if i % 100_000 == 99_999 {
            println!("{}: {}", i + 1, rss());
        }
    }
    if mode != "noflush" {
        store.flush().unwrap();
    }
    println!("end: {}", rss());
    std::fs::remove_dir_all(&dir).ok();
}
