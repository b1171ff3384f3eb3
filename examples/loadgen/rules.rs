//! The bench rules: a model of ≈220 rules (triggers, answers, articles) and the
//! `keywords.toml` written from it, so this program knows every rule's answer.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::Rng;

pub(crate) const WELCOME_TXT: &str = include_str!("../../scripts/bench/templates/welcome.txt");
pub(crate) const FALLBACK_TXT: &str = include_str!("../../scripts/bench/templates/fallback.txt");

pub(crate) enum Trigger {
    Subscribe { channels: Option<Vec<String>> },
    Scan(String),
    Click(String),
    Exact(Vec<String>),
    Prefix(Vec<String>),
    Regex(String),
    Contains(Vec<String>),
    Image,
    Fallback,
}

/// What a rule answers, and how this program predicts the reply text.
pub(crate) enum Answer {
    Text(String),
    /// `replies = [...]`: one picked at random by the server.
    OneOf(Vec<String>),
    /// An inline template and this program's rendering of it.
    Inline {
        src: String,
        render: fn(&Vars) -> String,
    },
    /// A file in templates/ and its rendering.
    File {
        name: &'static str,
        render: fn(&Vars) -> String,
    },
    News {
        title: String,
        description: String,
        url: String,
    },
    Article(usize),
}

/// What templates can see, as far as the bench rules use it.
pub(crate) struct Vars<'a> {
    pub(crate) text: &'a str,
    pub(crate) keyword: &'a str,
    pub(crate) channel: &'a str,
    pub(crate) groups: BTreeMap<String, String>,
}

pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) trigger: Trigger,
    pub(crate) answer: Answer,
    pub(crate) tags: Vec<String>,
}

pub(crate) struct ArticleDef {
    pub(crate) id: &'static str,
    pub(crate) title: &'static str,
    pub(crate) teaser: &'static str,
    pub(crate) price: &'static str,
    pub(crate) purchase_url: &'static str,
}

pub(crate) const ARTICLES: &[ArticleDef] = &[
    ArticleDef {
        id: "rust-101",
        title: "Rust 入门：所有权一次讲透",
        teaser: "为什么 Rust 不需要 GC？从一个编译错误讲起。",
        price: "¥9.9",
        purchase_url: "https://mp.example.com/buy/rust-101",
    },
    ArticleDef {
        id: "go-concurrency",
        title: "Go 并发模式实战",
        teaser: "channel、context 与 errgroup：三个模式搞定 90% 的并发代码。",
        price: "¥19.9",
        purchase_url: "https://mp.example.com/buy/go-concurrency",
    },
    ArticleDef {
        id: "career-map",
        title: "后端工程师成长路线图（2026 版）",
        teaser: "从初级到架构师，每一步该补什么。",
        price: "¥29",
        purchase_url: "https://mp.example.com/buy/career-map",
    },
    ArticleDef {
        id: "k8s-deploy",
        title: "一篇讲清 Kubernetes 部署",
        teaser: "Deployment、Service、Ingress，一次上线走一遍。",
        price: "¥19.9",
        purchase_url: "https://mp.example.com/buy/k8s-deploy",
    },
];

/// Keywords of the article rules (contains), by article index.
pub(crate) const ARTICLE_KEYWORDS: &[&[&str]] = &[
    &["rust"],
    &["golang", "go语言"],
    &["路线图"],
    &["kubernetes", "k8s"],
];

pub(crate) const CHANNELS: &[&str] = &[
    "course2026",
    "meetup-shanghai",
    "meetup-beijing",
    "partner-juejin",
    "partner-infoq",
    "poster-metro",
    "poster-campus",
    "live-0315",
    "live-0412",
    "ads-wechat",
    "ads-douyin",
    "newsletter",
];

pub(crate) const CLICKS: &[(&str, &str)] = &[
    ("MENU_COURSE", "训练营介绍"),
    ("MENU_SCHEDULE", "开课时间"),
    ("MENU_PRICE", "学费说明"),
    ("MENU_CATALOG", "文章目录"),
    ("MENU_FAQ", "常见问题"),
    ("MENU_ABOUT", "关于我们"),
    ("MENU_CONTACT", "联系客服"),
    ("MENU_COUPON", "领优惠券"),
    ("MENU_CHECKIN", "每日签到"),
    ("MENU_INVITE", "邀请好友"),
    ("MENU_FEEDBACK", "意见反馈"),
    ("MENU_JOBS", "内推机会"),
];

pub(crate) const NAMED_EXACT: &[&str] = &[
    "课程",
    "价格",
    "目录",
    "报名",
    "你好",
    "在吗",
    "课表",
    "开课时间",
    "学费",
    "退费",
    "联系方式",
    "客服电话",
    "公司地址",
    "加微信",
    "资料",
    "电子书",
    "书单",
    "学习路线",
    "常见问题",
    "帮助",
];

pub(crate) const CONTAINS_WORDS: &[&str] = &[
    "发票",
    "退款",
    "优惠",
    "直播",
    "回放",
    "作业",
    "证书",
    "团购",
    "会员",
    "续费",
    "简历",
    "面试",
    "内推",
    "实习",
    "社群",
    "加群",
    "打卡",
    "积分",
    "抽奖",
    "福利",
    "源码",
    "笔记",
    "课件",
    "讲义",
    "答疑",
    "周报",
    "招聘",
    "合作",
    "投稿",
    "转载",
    "赞助",
    "广告",
    "商务",
    "退订",
    "密码",
    "登录",
    "注册",
    "账号",
    "绑定",
    "快递",
    "物流",
    "邮寄",
    "发货",
    "投诉",
    "反馈",
    "故障",
    "报错",
    "卡顿",
    "闪退",
    "安装",
    "下载",
    "升级",
    "版本",
    "兼容",
    "配置",
    "部署",
    "容器",
    "集群",
    "数据库",
    "缓存",
    "索引",
    "事务",
    "并发",
    "线程",
    "协程",
    "异步",
    "内存",
    "指针",
    "泛型",
    "编译器",
    "调试",
    "单元测试",
    "性能",
    "算法",
    "链表",
    "红黑树",
    "动态规划",
    "设计模式",
    "微服务",
    "消息队列",
    "负载均衡",
    "网关",
    "限流",
    "熔断",
    "日志",
    "监控",
    "告警",
    "灰度",
    "回滚",
    "压测",
];

pub(crate) const PREFIXES: &[&str] = &[
    "查单号",
    "查成绩",
    "查名次",
    "查余额",
    "查排名",
    "#提问",
    "#晒图",
    "#心得",
    "#建议箱",
    "#许愿",
    "翻译",
    "天气",
    "搜题",
    "问答",
    "点歌",
    "求助",
    "报修",
    "预约",
    "改期",
    "取消预约",
];

/// (regex, reply template, this program's rendering, a text generator)
pub(crate) type RegexRule = (
    &'static str,
    &'static str,
    fn(&Vars) -> String,
    fn(&mut StdRng) -> String,
);

pub(crate) const REGEXES: &[RegexRule] = &[
    (
        r"^(?:订单|order)\s*(?P<order>\d{6,12})$",
        "订单 {{ groups.order }} 已收到 ✅ 我们会在 24 小时内核对后回复你。",
        |v| {
            format!(
                "订单 {} 已收到 ✅ 我们会在 24 小时内核对后回复你。",
                g(v, "order")
            )
        },
        |r| {
            format!(
                "{}{}{}",
                pick(r, &["订单", "订单 ", "order "]),
                r.gen_range(1..10),
                digits(r, 7)
            )
        },
    ),
    (
        r"^(?:手机|电话)\s*(?P<phone>1\d{10})$",
        "已记录手机号（尾号 {{ groups.phone[-4:] }}），课程顾问会尽快联系你 📞",
        |v| {
            let p = g(v, "phone");
            format!(
                "已记录手机号（尾号 {}），课程顾问会尽快联系你 📞",
                &p[p.len() - 4..]
            )
        },
        |r| format!("{}1{}", pick(r, &["手机", "电话 ", "手机 "]), digits(r, 10)),
    ),
    (
        r"^第\s*(?P<n>\d{1,3})\s*[课讲期]$",
        "第 {{ groups.n }} 讲的讲义和回放链接已发送，记得按时完成练习 📚",
        |v| {
            format!(
                "第 {} 讲的讲义和回放链接已发送，记得按时完成练习 📚",
                g(v, "n")
            )
        },
        |r| format!("第{}{}", r.gen_range(1..200), pick(r, &["课", "讲", "期"])),
    ),
    (
        r"^(?P<y>20\d\d)年(?P<m>\d{1,2})月课程$",
        "{{ groups.y }} 年 {{ groups.m }} 月的课程安排稍后推送给你 🗓",
        |v| format!("{} 年 {} 月的课程安排稍后推送给你 🗓", g(v, "y"), g(v, "m")),
        |r| format!("20{}年{}月课程", r.gen_range(24..30), r.gen_range(1..13)),
    ),
    (
        r"^学号\s*(?P<id>[a-z]{2}\d{6})$",
        "学号 {{ groups.id }} 绑定成功 🎓",
        |v| format!("学号 {} 绑定成功 🎓", g(v, "id")),
        |r| format!("学号{}{}{}", upper(r), upper(r), digits(r, 6)),
    ),
    (
        r"^验证码\s*(?P<code>\d{4,6})$",
        "验证码 {{ groups.code }} 已提交，请在网页上继续操作。",
        |v| format!("验证码 {} 已提交，请在网页上继续操作。", g(v, "code")),
        |r| format!("验证码 {}", digits(r, 6)),
    ),
    (
        r"^(?:bug|issue)\s*#?(?P<n>\d+)$",
        "问题 #{{ groups.n }} 已转给讲师 🐛 修好后会通知你。",
        |v| format!("问题 #{} 已转给讲师 🐛 修好后会通知你。", g(v, "n")),
        |r| {
            format!(
                "{} #{}",
                pick(r, &["BUG", "bug", "Issue"]),
                r.gen_range(1..5000)
            )
        },
    ),
    (
        r"^邀请码\s*(?P<code>[a-z0-9]{6})$",
        "邀请码 {{ groups.code }} 已生效，你和好友各得 50 积分 🎁",
        |v| format!("邀请码 {} 已生效，你和好友各得 50 积分 🎁", g(v, "code")),
        |r| {
            format!(
                "邀请码 {}{}{}{}",
                upper(r),
                digits(r, 2),
                upper(r),
                digits(r, 2)
            )
        },
    ),
    (
        r"^(?P<city>\p{Han}{2,3})天气$",
        "{{ groups.city }}今天适合在家写代码 ☔",
        |v| format!("{}今天适合在家写代码 ☔", g(v, "city")),
        |r| {
            format!(
                "{}天气",
                pick(r, &["上海", "北京", "深圳", "杭州", "成都", "乌鲁木齐"])
            )
        },
    ),
    (
        r"^(?:打分|评分)\s*(?P<score>[1-5])$",
        "感谢你给本期内容打 {{ groups.score }} 分 ⭐",
        |v| format!("感谢你给本期内容打 {} 分 ⭐", g(v, "score")),
        |r| format!("{}{}", pick(r, &["打分", "评分 "]), r.gen_range(1..6)),
    ),
];

pub(crate) fn g(v: &Vars, name: &str) -> String {
    v.groups.get(name).cloned().unwrap_or_default()
}

pub(crate) fn pick<'a>(r: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[r.gen_range(0..xs.len())]
}

pub(crate) fn digits(r: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + r.gen_range(0..10u8)))
        .collect()
}

pub(crate) fn upper(r: &mut StdRng) -> char {
    char::from(b'A' + r.gen_range(0..26u8))
}

pub(crate) fn emoji_reply(i: usize) -> &'static str {
    ["📚", "✅", "👍", "🎉", "💡", "🚀", "🙌", "✨"][i % 8]
}

/// The bench rules, in file order. Deterministic: `rules --check` depends on it.
pub(crate) fn model() -> Vec<Rule> {
    let mut rules = Vec::new();
    let rule = |name: String, trigger, answer, tags: &[&str]| Rule {
        name,
        trigger,
        answer,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    };
    // Follow: one rule per campaign channel (two channels share one), then the generic welcome.
    for (i, ch) in CHANNELS.iter().enumerate().take(10) {
        let channels = if i == 9 {
            vec![ch.to_string(), CHANNELS[10].to_string()]
        } else {
            vec![ch.to_string()]
        };
        rules.push(rule(
            format!("welcome-{ch}"),
            Trigger::Subscribe { channels: Some(channels) },
            Answer::Inline {
                src: "欢迎通过「{{ channel }}」关注码农成长营 🎉 回复「课程」看训练营，回复「资料」领取学习资料。".into(),
                render: |v| format!("欢迎通过「{}」关注码农成长营 🎉 回复「课程」看训练营，回复「资料」领取学习资料。", v.channel),
            },
            &["from-qr"],
        ));
    }
    rules.push(rule(
        "welcome".into(),
        Trigger::Subscribe { channels: None },
        Answer::File {
            name: "welcome.txt",
            render: |_| strip_one_newline(WELCOME_TXT),
        },
        &[],
    ));
    rules.push(rule(
        "scan-course".into(),
        Trigger::Scan("course2026".into()),
        Answer::Text("你已经关注啦～回复「课程」查看 2026 训练营安排。".into()),
        &["from-qr"],
    ));
    for (i, (key, label)) in CLICKS.iter().enumerate() {
        let answer = if i % 3 == 0 {
            Answer::News {
                title: format!("{label} · 码农成长营"),
                description: format!("点开查看「{label}」的详细说明 {}", emoji_reply(i)),
                url: format!("https://mp.example.com/menu/{}", key.to_ascii_lowercase()),
            }
        } else {
            Answer::Text(format!(
                "【{label}】这里是{label}的说明，有问题直接回复关键词即可 {}",
                emoji_reply(i)
            ))
        };
        let tags: &[&str] = if i % 4 == 0 { &["menu-user"] } else { &[] };
        rules.push(rule(
            format!("menu-{}", key.to_ascii_lowercase()),
            Trigger::Click(key.to_string()),
            answer,
            tags,
        ));
    }
    for (i, kw) in NAMED_EXACT.iter().enumerate() {
        let answer = if i % 4 == 1 {
            Answer::OneOf(vec![
                format!(
                    "关于「{kw}」：请看置顶文章第 {} 节 {}",
                    i + 1,
                    emoji_reply(i)
                ),
                format!(
                    "「{kw}」的答案整理好啦 👉 回复「目录」看全部 {}",
                    emoji_reply(i + 1)
                ),
            ])
        } else {
            Answer::Text(format!(
                "关于「{kw}」：请看置顶文章第 {} 节，仍有疑问请回复「帮助」{}",
                i + 1,
                emoji_reply(i)
            ))
        };
        rules.push(rule(
            format!("exact-{}", i + 1),
            Trigger::Exact(vec![kw.to_string()]),
            answer,
            &[],
        ));
    }
    for n in 101..=180 {
        let mut kws = vec![format!("资料{n}")];
        if n % 5 == 0 {
            kws.push(format!("ziliao{n}"));
        }
        rules.push(rule(
            format!("material-{n}"),
            Trigger::Exact(kws),
            Answer::Text(format!(
                "第 {n} 号资料《后端工程师实战手册·第 {} 册》下载：https://pan.example.com/s/mat{n} 提取码 {:04} {}",
                n - 100,
                (n * 37) % 10_000,
                emoji_reply(n)
            )),
            if n % 10 == 0 { &["material"] } else { &[] },
        ));
    }
    for (i, p) in PREFIXES.iter().enumerate() {
        let answer = if i % 2 == 0 {
            Answer::Inline {
                src: "已收到你的「{{ keyword }}」请求：{{ text }} 👌".into(),
                render: |v| format!("已收到你的「{}」请求：{} 👌", v.keyword, v.text),
            }
        } else {
            Answer::Text(format!("「{p}」功能维护中，稍后再试 🛠"))
        };
        rules.push(rule(
            format!("prefix-{}", i + 1),
            Trigger::Prefix(vec![p.to_string()]),
            answer,
            &[],
        ));
    }
    for (i, (re, src, render, _)) in REGEXES.iter().enumerate() {
        rules.push(rule(
            format!("regex-{}", i + 1),
            Trigger::Regex(re.to_string()),
            Answer::Inline {
                src: src.to_string(),
                render: *render,
            },
            &[],
        ));
    }
    for (i, kws) in ARTICLE_KEYWORDS.iter().enumerate() {
        rules.push(rule(
            format!("article-{}", ARTICLES[i].id),
            Trigger::Contains(kws.iter().map(|k| k.to_string()).collect()),
            Answer::Article(i),
            &[],
        ));
    }
    // 60 contains rules: the first 30 with two words, the rest with one.
    let mut words = CONTAINS_WORDS.iter();
    for i in 0..60 {
        let n = if i < 30 { 2 } else { 1 };
        let kws: Vec<String> = words.by_ref().take(n).map(|w| w.to_string()).collect();
        let answer = Answer::Text(format!(
            "关于「{}」的问题：我们整理了一份说明 👉 https://mp.example.com/faq/{} {}",
            kws.join("/"),
            i + 1,
            emoji_reply(i)
        ));
        let tags: &[&str] = if i % 3 == 0 { &["asked-faq"] } else { &[] };
        rules.push(rule(
            format!("faq-{}", i + 1),
            Trigger::Contains(kws),
            answer,
            tags,
        ));
    }
    rules.push(rule(
        "photo".into(),
        Trigger::Image,
        Answer::Text("收到图片，谢谢分享！如果是报名截图，我们会尽快确认。".into()),
        &[],
    ));
    rules.push(rule(
        "fallback".into(),
        Trigger::Fallback,
        Answer::File {
            name: "fallback.txt",
            render: |v| strip_one_newline(FALLBACK_TXT).replace("{{ text }}", v.text),
        },
        &[],
    ));
    rules
}

/// minijinja drops one trailing newline of a template.
pub(crate) fn strip_one_newline(s: &str) -> String {
    s.strip_suffix('\n').unwrap_or(s).to_string()
}

pub(crate) fn q(s: &str) -> String {
    // A JSON string is a valid TOML basic string for everything written here.
    serde_json::to_string(s).expect("strings serialise")
}

pub(crate) fn q_list(xs: &[String]) -> String {
    format!(
        "[{}]",
        xs.iter().map(|x| q(x)).collect::<Vec<_>>().join(", ")
    )
}

pub(crate) fn rules_toml(rules: &[Rule]) -> String {
    let mut t = String::new();
    t.push_str(
        "# Bench rules for scripts/bench.sh: generated by `cargo run --release --example loadgen -- rules`.\n\
         # Do not edit by hand: the load generator predicts every reply from the same model.\n\n\
         [account]\ntimezone = \"Asia/Shanghai\"\ntemplates_dir = \"templates\"\n",
    );
    for r in rules {
        let _ = write!(t, "\n[[rule]]\nname = {}\n", q(&r.name));
        match &r.trigger {
            Trigger::Subscribe { channels: Some(c) } => {
                let _ = writeln!(
                    t,
                    "when = {{ event = \"subscribe\", channel = {} }}",
                    q_list(c)
                );
            }
            Trigger::Subscribe { channels: None } => {
                t.push_str("when = { event = \"subscribe\" }\n")
            }
            Trigger::Scan(s) => {
                let _ = writeln!(t, "when = {{ scan = {} }}", q(s));
            }
            Trigger::Click(k) => {
                let _ = writeln!(t, "when = {{ click = {} }}", q(k));
            }
            Trigger::Exact(k) => {
                let _ = writeln!(t, "when = {{ exact = {} }}", q_list(k));
            }
            Trigger::Prefix(k) => {
                let _ = writeln!(t, "when = {{ prefix = {} }}", q_list(k));
            }
            Trigger::Contains(k) => {
                let _ = writeln!(t, "when = {{ contains = {} }}", q_list(k));
            }
            Trigger::Regex(re) => {
                let _ = writeln!(t, "when = {{ regex = ['{re}'] }}");
            }
            Trigger::Image => t.push_str("when = { msg_type = \"image\" }\n"),
            Trigger::Fallback => t.push_str("fallback = true\n"),
        }
        match &r.answer {
            Answer::Text(s) => {
                let _ = writeln!(t, "reply = {{ text = {} }}", q(s));
            }
            Answer::Inline { src, .. } => {
                let _ = writeln!(t, "reply = {{ text = {} }}", q(src));
            }
            Answer::OneOf(xs) => {
                let items: Vec<String> = xs
                    .iter()
                    .map(|x| format!("{{ text = {} }}", q(x)))
                    .collect();
                let _ = writeln!(t, "replies = [ {} ]", items.join(", "));
            }
            Answer::File { name, .. } => {
                let _ = writeln!(t, "reply = {{ template = {} }}", q(name));
            }
            Answer::News {
                title,
                description,
                url,
            } => {
                let _ = writeln!(
                    t,
                    "reply = {{ news = [ {{ title = {}, description = {}, pic_url = \"https://mp.example.com/img/menu.jpg\", url = {} }} ] }}",
                    q(title),
                    q(description),
                    q(url)
                );
            }
            Answer::Article(i) => {
                let _ = writeln!(t, "article = {}", q(ARTICLES[*i].id));
            }
        }
        if !r.tags.is_empty() {
            let _ = writeln!(t, "tag = {}", q_list(&r.tags));
        }
    }
    for a in ARTICLES {
        let _ = write!(
            t,
            "\n[[article]]\nid = {}\ntitle = {}\nteaser = {}\ncover = \"https://mp.example.com/img/{}.jpg\"\nprice = {}\nbody_url = \"https://mp.example.com/read/{}\"\npurchase_url = {}\n",
            q(a.id),
            q(a.title),
            q(a.teaser),
            a.id,
            q(a.price),
            a.id,
            q(a.purchase_url)
        );
    }
    // Three groups of five: twelve click keys and three links.
    let groups = [
        ("训练营", 0..4, "https://mp.example.com/camp/2026"),
        ("学习", 4..8, "https://mp.example.com/articles"),
        ("我的", 8..12, "https://mp.example.com/me"),
    ];
    for (name, range, url) in groups {
        let _ = write!(t, "\n[[menu.button]]\nname = {}\n", q(name));
        for i in range {
            let (key, label) = CLICKS[i];
            let _ = write!(
                t,
                "\n[[menu.button.sub_button]]\ntype = \"click\"\nname = {}\nkey = {}\n",
                q(label),
                q(key)
            );
        }
        let _ = write!(
            t,
            "\n[[menu.button.sub_button]]\ntype = \"view\"\nname = \"更多\"\nurl = {}\n",
            q(url)
        );
    }
    t
}
