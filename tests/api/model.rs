//! The model client against endpoints on real ports: the fake OpenAI-compatible API
//! (`fakeai.rs`) for answers, refusals, garbage and silence, and a raw TCP server for what no
//! well-behaved HTTP framework sends (an event cut across TCP writes, an error mid-stream).

use std::time::{Duration, Instant};

use mpgate::assistant::client::{
    ChatMessage, ChatRequest, Completion, ModelClient, ModelError, Role, Usage,
};
use mpgate::settings::Secret;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::fakeai::{FakeAi, Script};

const KEY: &str = "sk-test-0123456789";

fn request(api_base: &str, question: &str) -> ChatRequest {
    ChatRequest {
        api_base: api_base.to_string(),
        api_key: Some(Secret::new(KEY)),
        model: "fake-model".to_string(),
        messages: vec![
            ChatMessage {
                role: Role::System,
                content: "你是课程助教。".to_string(),
            },
            ChatMessage {
                role: Role::User,
                content: question.to_string(),
            },
        ],
        max_tokens: 300,
        temperature: 0.5,
    }
}

async fn ask(req: &ChatRequest) -> Result<Completion, ModelError> {
    ModelClient::new()
        .complete(req, Duration::from_secs(5))
        .await
}

#[tokio::test]
async fn an_answer_streamed_in_small_chunks_arrives_whole_with_its_usage() {
    let fake = FakeAi::start().await;
    let answer = "第一课讲的是复利：本金产生利息，利息再生利息。🚀 Compound interest, \
                  in short! 详见《第一课》。";
    fake.set_default(Script {
        chunk_chars: 3,
        usage: Some((812, 57)),
        ..Script::answer(answer)
    });
    let got = ask(&request(&fake.base(), "第一课讲什么？")).await.unwrap();
    assert_eq!(got.text, answer);
    assert_eq!(
        got.usage,
        Some(Usage {
            prompt_tokens: 812,
            completion_tokens: 57,
            total_tokens: 869
        })
    );
    assert_eq!(got.finish_reason.as_deref(), Some("stop"));
    assert!(got.first_sentence.is_some_and(|f| f <= got.took));

    let sent = fake.requests();
    assert_eq!(sent.len(), 1, "one call for one answer");
    assert_eq!(
        sent[0],
        json!({
            "model": "fake-model",
            "messages": [
                {"role": "system", "content": "你是课程助教。"},
                {"role": "user", "content": "第一课讲什么？"},
            ],
            "max_tokens": 300,
            "temperature": 0.5,
            "stream": true,
            "stream_options": {"include_usage": true},
        })
    );
    assert_eq!(fake.authorizations(), vec![Some(format!("Bearer {KEY}"))]);
}

#[tokio::test]
async fn without_a_key_no_authorization_is_sent_and_a_trailing_slash_is_harmless() {
    let fake = FakeAi::start().await;
    let mut req = request(&format!("{}/", fake.base()), "你好");
    req.api_key = None;
    let got = ask(&req).await.unwrap();
    assert_eq!(got.text, "好的。");
    assert_eq!(fake.authorizations(), vec![None]);
}

#[tokio::test]
async fn an_endpoint_that_answers_an_http_error_gives_its_status() {
    let fake = FakeAi::start().await;
    for status in [500, 401, 429, 503] {
        fake.on(
            &format!("问题{status}"),
            Script {
                status: Some(status),
                ..Script::default()
            },
        );
        let got = ask(&request(&fake.base(), &format!("问题{status}"))).await;
        assert!(
            matches!(got, Err(ModelError::Status { status: s }) if s == status),
            "{status}: {got:?}"
        );
    }
}

#[tokio::test]
async fn a_request_the_endpoint_refuses_is_status_400() {
    let fake = FakeAi::start().await;
    let mut no_model = request(&fake.base(), "你好");
    no_model.model = String::new();
    let got = ask(&no_model).await;
    assert!(
        matches!(got, Err(ModelError::Status { status: 400 })),
        "{got:?}"
    );
    let mut no_messages = request(&fake.base(), "你好");
    no_messages.messages.clear();
    let got = ask(&no_messages).await;
    assert!(
        matches!(got, Err(ModelError::Status { status: 400 })),
        "{got:?}"
    );
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn a_garbage_line_in_the_stream_is_malformed_not_a_half_answer() {
    let fake = FakeAi::start().await;
    fake.set_default(Script {
        chunk_chars: 2,
        malformed_after: Some(2),
        ..Script::answer("这是一个会被打断的回答。")
    });
    let got = ask(&request(&fake.base(), "你好")).await;
    assert!(
        matches!(&got, Err(ModelError::Malformed(why)) if why.contains("not JSON")),
        "{got:?}"
    );
}

#[tokio::test]
async fn an_empty_answer_is_empty() {
    let fake = FakeAi::start().await;
    fake.set_default(Script::answer(""));
    let got = ask(&request(&fake.base(), "你好")).await;
    assert!(matches!(got, Err(ModelError::Empty)), "{got:?}");
}

#[tokio::test]
async fn a_stream_that_never_ends_times_out_within_the_limit() {
    let fake = FakeAi::start().await;
    fake.on(
        "挂起",
        Script {
            hang: true,
            ..Script::answer("说到一半，")
        },
    );
    fake.on(
        "沉默",
        Script {
            first_delay: Duration::from_secs(10),
            ..Script::default()
        },
    );
    let limit = Duration::from_millis(600);
    for question in ["挂起", "沉默"] {
        let start = Instant::now();
        let got = ModelClient::new()
            .complete(&request(&fake.base(), question), limit)
            .await;
        let took = start.elapsed();
        assert!(
            matches!(got, Err(ModelError::Timeout(l)) if l == limit),
            "{question}: {got:?}"
        );
        assert!(
            took >= limit && took < limit + Duration::from_millis(200),
            "{question}: gave up after {took:?}"
        );
    }
}

#[tokio::test]
async fn the_first_sentence_of_a_slow_answer_is_known_long_before_its_end() {
    let fake = FakeAi::start().await;
    fake.set_default(Script {
        chunk_chars: 4,
        chunk_delay: Duration::from_millis(100),
        // The first sentence ends in the second chunk; eight more chunks follow.
        ..Script::answer(
            "可以退款。七天内在订单页申请即可，款项原路退回，一般三个工作日内到账，请留意。",
        )
    });
    let got = ask(&request(&fake.base(), "能退款吗")).await.unwrap();
    let first = got.first_sentence.expect("a sentence end was seen");
    assert!(
        got.took >= Duration::from_millis(900),
        "ten chunks 100 ms apart: {:?}",
        got.took
    );
    assert!(
        first + Duration::from_millis(600) <= got.took,
        "first sentence at {first:?}, end at {:?}",
        got.took
    );
}

#[tokio::test]
async fn an_answer_over_a_mebibyte_is_refused_without_reading_on() {
    let fake = FakeAi::start().await;
    fake.set_default(Script {
        chunk_chars: 4096,
        ..Script::answer(&"长".repeat(400_000))
    });
    let got = ask(&request(&fake.base(), "写一本书")).await;
    assert!(
        matches!(&got, Err(ModelError::Malformed(why)) if why.contains("over")),
        "{got:?}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_an_http_error_that_does_not_name_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let got = ask(&request(&format!("http://127.0.0.1:{port}/v1"), "你好")).await;
    let Err(ModelError::Http(message)) = got else {
        panic!("{got:?}");
    };
    assert!(!message.contains(&port.to_string()), "{message}");
    assert!(!message.contains("127.0.0.1"), "{message}");
}

/// A server that takes one request, records its head, and answers with `writes`: each a piece
/// of bytes written on its own, after its pause. The connection closes after the last.
async fn raw_server(
    writes: Vec<(Duration, Vec<u8>)>,
) -> (String, tokio::sync::oneshot::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.set_nodelay(true).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // The head, then as much body as Content-Length says.
        let (head_end, length) = loop {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client hung up mid-request");
            got.extend_from_slice(&buf[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                break (end + 4, length);
            }
        };
        while got.len() < head_end + length {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client hung up mid-body");
            got.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
        for (pause, bytes) in writes {
            tokio::time::sleep(pause).await;
            if socket.write_all(&bytes).await.is_err() {
                return;
            }
            socket.flush().await.unwrap();
        }
        let _ = socket.shutdown().await;
    });
    (format!("http://127.0.0.1:{port}/v1"), rx)
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";

fn content_event(text: &str) -> String {
    format!(
        "data: {}\r\n\r\n",
        json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
    )
}

#[tokio::test]
async fn an_event_split_across_tcp_writes_mid_character_is_put_back_together() {
    let first = content_event("先说结论😀");
    // Cut inside the emoji's four bytes, and between the `\r` and `\n` of the event's end.
    let emoji_at = first.find('😀').unwrap() + 2;
    let cr_at = first.len() - 3;
    let b = first.as_bytes();
    let pause = Duration::from_millis(150);
    let writes = vec![
        (Duration::ZERO, SSE_HEAD.to_vec()),
        (Duration::ZERO, b[..emoji_at].to_vec()),
        (pause, b[emoji_at..cr_at].to_vec()),
        (pause, b[cr_at..].to_vec()),
        (Duration::ZERO, b"da".to_vec()),
        (pause, content_event("：可以。").as_bytes()[2..].to_vec()),
        (
            Duration::ZERO,
            b": a comment\r\nevent: message\r\ndata:{\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\r\n\r\ndata: [DONE]\r\n\r\n".to_vec(),
        ),
    ];
    let (base, head) = raw_server(writes).await;
    let got = ask(&request(&base, "结论是什么")).await.unwrap();
    assert_eq!(got.text, "先说结论😀：可以。");
    assert_eq!(
        got.usage,
        Some(Usage {
            prompt_tokens: 9,
            completion_tokens: 4,
            total_tokens: 13
        })
    );
    assert!(got.took >= pause * 3, "{:?}", got.took);
    let head = head.await.unwrap();
    let lower = head.to_ascii_lowercase();
    assert!(
        head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        lower.contains("\r\naccept: text/event-stream\r\n"),
        "{head}"
    );
    assert!(
        lower.contains("\r\ncontent-type: application/json\r\n"),
        "{head}"
    );
    assert!(lower.contains(&format!(
        "\r\nauthorization: bearer {}\r\n",
        KEY.to_ascii_lowercase()
    )));
    let body: Value = serde_json::from_str(&head[head.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["messages"][1]["content"], "结论是什么");
}

#[tokio::test]
async fn an_error_object_mid_stream_is_malformed_with_its_message() {
    let writes = vec![
        (Duration::ZERO, SSE_HEAD.to_vec()),
        (Duration::ZERO, content_event("好的，").into_bytes()),
        (
            Duration::ZERO,
            b"data: {\"error\":{\"message\":\"The server is overloaded\",\"type\":\"server_error\"}}\n\n"
                .to_vec(),
        ),
    ];
    let (base, _) = raw_server(writes).await;
    let got = ask(&request(&base, "你好")).await;
    assert!(
        matches!(&got, Err(ModelError::Malformed(why)) if why.contains("The server is overloaded")),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_server_that_ignores_stream_and_answers_one_object_is_understood() {
    let body = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "整段回答。"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    })
    .to_string();
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(body.as_bytes());
    let (base, _) = raw_server(vec![(Duration::ZERO, answer)]).await;
    let got = ask(&request(&base, "你好")).await.unwrap();
    assert_eq!(got.text, "整段回答。");
    assert_eq!(got.usage.map(|u| u.total_tokens), Some(8));
    assert_eq!(got.finish_reason.as_deref(), Some("stop"));
}

#[tokio::test]
async fn a_stream_cut_off_by_the_server_is_an_http_error() {
    // A chunked body that stops mid-chunk: the transport, not the answer, failed.
    let mut writes = vec![(
        Duration::ZERO,
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec(),
    )];
    let event = content_event("半截");
    writes.push((
        Duration::ZERO,
        format!("{:x}\r\n{event}\r\n", event.len() + 50).into_bytes(),
    ));
    let (base, _) = raw_server(writes).await;
    let got = ask(&request(&base, "你好")).await;
    assert!(matches!(got, Err(ModelError::Http(_))), "{got:?}");
}
