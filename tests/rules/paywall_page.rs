//! The shipped paywall page (templates/paywall.html) for each state of WeChat Pay: what a reader
//! sees is decided by the `pay` context the page handler passes, and no value can break out of
//! the page's HTML or its script.

use serde_json::{json, Value};

use super::*;

fn page(pay: Option<Value>) -> String {
    let rs = rules("");
    let mut ctx = json!({
        "account_name": "mpgate",
        "article": {
            "id": "rust-101", "title": "Rust <101>", "teaser": "t", "cover": "",
            "price": "¥19.90", "purchase_url": "https://shop.test/rust-101",
        },
        "reason": "购买后阅读全文",
    });
    if let Some(p) = pay {
        ctx["pay"] = p;
    }
    rs.render_page("paywall.html", &ctx)
        .unwrap_or_else(|e| panic!("paywall.html: {e}"))
}

fn pay_on(in_wechat: bool, u: &str) -> Value {
    json!({
        "on": true, "in_wechat": in_wechat, "price": "¥19.90", "amount_fen": 1990,
        "order_url": "/pay/orders",
        "proof": {"article": "rust-101", "u": u, "e": "1900000000", "s": "c2ln"},
        "bind_url": null,
    })
}

/// The JSON the page's script reads, parsed back.
fn pay_json(html: &str) -> Value {
    let start = html
        .find(r#"<script type="application/json" id="pay">"#)
        .unwrap_or_else(|| panic!("no pay JSON block: {html}"));
    let rest = &html[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest.find("</script>").unwrap();
    serde_json::from_str(&rest[open..close]).unwrap_or_else(|e| panic!("{e}: {rest}"))
}

#[test]
fn inside_wechat_the_page_offers_the_buy_button_with_the_price() {
    let html = page(Some(pay_on(true, "oReader")));
    assert!(
        html.contains(r#"id="buy">购买并阅读 ¥19.90</button>"#),
        "{html}"
    );
    assert_eq!(pay_json(&html)["proof"]["u"], "oReader");
    assert_eq!(pay_json(&html)["order_url"], "/pay/orders");
    assert!(!html.contains("请在微信中打开"), "{html}");
    // The operator's shop link is the pay-off way to buy; with pay on it is not offered.
    assert!(!html.contains("shop.test"), "{html}");
    for outside in ["src=\"http", "<link", "@import", "url("] {
        assert!(!html.contains(outside), "loads {outside}: {html}");
    }
}

#[test]
fn no_value_can_break_out_of_the_script_or_the_html() {
    let hostile = "</script><script>alert(1)</script><!--";
    let html = page(Some(pay_on(true, hostile)));
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(!html.contains("<!--"), "{html}");
    assert_eq!(
        pay_json(&html)["proof"]["u"],
        hostile,
        "the script still reads the value"
    );
    assert!(html.contains("Rust &lt;101&gt;"), "{html}");
}

#[test]
fn outside_wechat_the_page_says_to_open_it_in_wechat_and_has_no_button_or_script() {
    let html = page(Some(pay_on(false, "oReader")));
    assert!(html.contains("请在微信中打开此链接完成购买"), "{html}");
    assert!(
        html.contains(r#"<div class="price">¥19.90</div>"#),
        "{html}"
    );
    assert!(!html.contains("<button"), "{html}");
    assert!(!html.contains("<script"), "{html}");
}

#[test]
fn with_pay_off_or_unknown_the_page_is_the_shop_link_as_before() {
    for pay in [Some(json!({"on": false})), None] {
        let html = page(pay.clone());
        assert!(
            html.contains(r#"<div class="price">¥19.90</div>"#),
            "{pay:?}: {html}"
        );
        assert!(
            html.replace("&#x2f;", "/").contains(
                r#"<a class="button" href="https://shop.test/rust-101">购买后阅读全文</a>"#
            ),
            "{pay:?}: {html}"
        );
        assert!(!html.contains("<script"), "{pay:?}: {html}");
        assert!(!html.contains("<button"), "{pay:?}: {html}");
    }
}
