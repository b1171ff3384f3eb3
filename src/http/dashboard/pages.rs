//! The dashboard's pages: each handler gathers its figures, lays them out as [`Table`]s and
//! charts, and either renders its template or, with `?format=csv`, answers one table as CSV.
//! A page and its CSV come from the same [`Table`], so the download always matches the page.
//!
//! Money is shown as `¥12.34` (CSV: `12.34`), times in the account's time zone (the rules').

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::csv::{Csv, Field};
use super::session::form;
use super::svg::{self, Chart, Kind, Series, Unit};
use super::{html, render, see_other, DashboardError, SignedIn};
// Money as every page and teaser shows it (`¥12.34`): the rules' one formatter.
use crate::analytics::Range;
use crate::http::limits::Body;
use crate::pipeline::Gateway;
use crate::rules::display_fen as yuan;
use crate::store::platform::{OutboxFilter, OutboxState};
use crate::store::{GrantOutcome, OrderState, RevokeOutcome};
use crate::wechat::types::OpenId;

/// The ranges a page offers (`?days=`).
pub const DAY_OPTIONS: [u32; 4] = [7, 30, 90, 365];
/// Rows a list shows at most (the newest); the CSV has the same.
pub const LIST_LIMIT: usize = 500;
/// Texts the unanswered page lists.
pub const UNANSWERED_LIMIT: usize = 100;

/// The query every page understands; each uses what applies to it.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub days: Option<String>,
    pub format: Option<String>,
    pub table: Option<String>,
    pub state: Option<String>,
    pub openid: Option<String>,
    /// What the last form did (after its 303), e.g. `granted`.
    pub done: Option<String>,
    pub article: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Tables and their cells

/// How a cell is written to CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Raw {
    Text,
    Number,
    /// Fen: `¥12.34` on the page, `12.34` in the CSV.
    Fen(u64),
}

/// One cell as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub text: String,
    /// `data-figure` id for tests and scripts (unique on the page).
    pub figure: Option<String>,
    /// Background opacity (0–1) for shaded cells (retention rates).
    pub shade: Option<String>,
    pub href: Option<String>,
    pub numeric: bool,
    /// Long free text that may wrap (other cells keep to one line; the table scrolls).
    pub wrap: bool,
    #[serde(skip)]
    raw: Raw,
}

impl Cell {
    fn new(text: String, raw: Raw) -> Cell {
        Cell {
            numeric: raw != Raw::Text,
            text,
            figure: None,
            shade: None,
            href: None,
            wrap: false,
            raw,
        }
    }
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::new(s.into(), Raw::Text)
    }
    pub fn count(n: u64) -> Cell {
        Cell::new(n.to_string(), Raw::Number)
    }
    pub fn signed(n: i64) -> Cell {
        Cell::new(n.to_string(), Raw::Number)
    }
    pub fn money(fen: u64) -> Cell {
        Cell::new(yuan(fen), Raw::Fen(fen))
    }
    /// A rate as a percentage, `—` when there is none (nothing to divide by).
    pub fn pct(rate: Option<f64>) -> Cell {
        let mut c = Cell::text(percent(rate));
        c.numeric = true;
        c
    }
    pub fn figure(mut self, id: impl Into<String>) -> Cell {
        self.figure = Some(id.into());
        self
    }
    pub fn wrap(mut self) -> Cell {
        self.wrap = true;
        self
    }
    pub fn link(mut self, href: String) -> Cell {
        self.href = Some(href);
        self
    }
    /// Shades the cell by `rate` (0–1).
    pub fn shade(mut self, rate: Option<f64>) -> Cell {
        self.shade = rate.map(|r| format!("{:.2}", r.clamp(0.0, 1.0) * 0.8));
        self
    }
    fn field(&self) -> Field {
        match self.raw {
            Raw::Text => Field::Text(self.text.clone()),
            Raw::Number => Field::Number(self.text.clone()),
            Raw::Fen(f) => Field::Number(format!("{}.{:02}", f / 100, f % 100)),
        }
    }
}

/// One table of a page, and its CSV.
#[derive(Debug, Serialize)]
pub struct Table {
    /// `?table=` name, and the table's id on the page.
    pub name: &'static str,
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// What would show up here, for an empty table.
    pub empty: String,
    /// The page's URL for this table's CSV.
    pub csv_href: String,
}

impl Table {
    fn new(name: &'static str, caption: &str, columns: &[&str], empty: &str) -> Table {
        Table {
            name,
            caption: caption.into(),
            columns: columns.iter().map(|c| (*c).to_string()).collect(),
            rows: Vec::new(),
            empty: empty.into(),
            csv_href: String::new(),
        }
    }

    pub fn csv(&self) -> String {
        let header: Vec<&str> = self.columns.iter().map(String::as_str).collect();
        let mut c = Csv::new(&header);
        for row in &self.rows {
            let fields: Vec<Field> = row.iter().map(Cell::field).collect();
            c.row(&fields);
        }
        c.finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting

fn yuan_f(fen: Option<f64>) -> String {
    match fen {
        Some(f) if f.is_finite() => yuan(f.round().max(0.0) as u64),
        _ => "—".into(),
    }
}

fn percent(rate: Option<f64>) -> String {
    match rate {
        Some(r) if r.is_finite() => format!("{:.1}%", r * 100.0),
        _ => "—".into(),
    }
}

fn ratio(n: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

/// Unix seconds as the account's local time.
fn at(ts: i64, tz: Tz) -> String {
    tz.timestamp_opt(ts, 0)
        .single()
        .map_or_else(|| "—".into(), |d| d.format("%Y-%m-%d %H:%M").to_string())
}

/// A duration as operators read it: `45 s`, `12 min`, `3 h 05 min`, `2 d 4 h`.
fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A query-string value, percent-encoded (everything but unreserved characters).
fn enc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn lookup_href(openid: &str) -> String {
    format!("/admin/dashboard/subscribers?openid={}", enc(openid))
}

// ---------------------------------------------------------------------------------------------
// The page frame

/// (id, path, label) of each page, in the nav's order.
const NAV: &[(&str, &str, &str)] = &[
    ("overview", "/admin/dashboard", "Overview"),
    ("channels", "/admin/dashboard/channels", "Channels"),
    ("retention", "/admin/dashboard/retention", "Retention"),
    ("articles", "/admin/dashboard/articles", "Articles"),
    ("unanswered", "/admin/dashboard/unanswered", "Unanswered"),
    ("assistant", "/admin/dashboard/assistant", "Assistant"),
    ("handoffs", "/admin/dashboard/handoffs", "Hand-offs"),
    ("outbox", "/admin/dashboard/outbox", "Outbox"),
    ("orders", "/admin/dashboard/orders", "Orders"),
    ("subscribers", "/admin/dashboard/subscribers", "Subscribers"),
];

/// What every page handler starts from.
struct Ctx<'a> {
    gw: &'a Gateway,
    signed: &'a SignedIn,
    q: &'a PageQuery,
    page: &'static str,
    now: DateTime<Utc>,
    today: NaiveDate,
    tz: Tz,
}

impl<'a> Ctx<'a> {
    fn new(gw: &'a Gateway, signed: &'a SignedIn, q: &'a PageQuery, page: &'static str) -> Self {
        let now = Utc::now();
        Ctx {
            gw,
            signed,
            q,
            page,
            now,
            today: gw.today(now),
            tz: gw.rules().current().timezone(),
        }
    }

    fn path(&self) -> &'static str {
        NAV.iter()
            .find(|(id, ..)| *id == self.page)
            .map_or("/admin/dashboard", |(_, p, _)| p)
    }

    /// `?days=`, one of [`DAY_OPTIONS`] (default 30).
    fn days(&self) -> Result<u32, DashboardError> {
        match self.q.days.as_deref().filter(|d| !d.is_empty()) {
            None => Ok(30),
            Some(d) => d
                .parse::<u32>()
                .ok()
                .filter(|d| DAY_OPTIONS.contains(d))
                .ok_or_else(|| {
                    DashboardError::BadRequest(format!(
                        "`days` must be 7, 30, 90 or 365, not `{d}`"
                    ))
                }),
        }
    }

    fn range(&self) -> Result<Range, DashboardError> {
        Ok(Range::last(self.days()?, self.today))
    }

    /// This page's URL with its filters (without `format`/`table`).
    fn self_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(d) = self.q.days.as_deref().filter(|d| !d.is_empty()) {
            q.push(("days", d.to_string()));
        }
        if let Some(s) = self.q.state.as_deref().filter(|s| !s.is_empty()) {
            q.push(("state", s.to_string()));
        }
        if let Some(o) = self.q.openid.as_deref().filter(|s| !s.is_empty()) {
            q.push(("openid", o.to_string()));
        }
        q
    }

    fn csv_href(&self, table: &str) -> String {
        let mut q = self.self_query();
        q.push(("format", "csv".into()));
        q.push(("table", table.to_string()));
        let qs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
        format!("{}?{}", self.path(), qs.join("&"))
    }

    /// The frame every template gets: nav, CSRF token, the range selector, the day.
    fn frame(&self, title: &str, ranged: bool) -> serde_json::Value {
        let nav: Vec<serde_json::Value> = NAV
            .iter()
            .map(|(id, path, label)| {
                serde_json::json!({"id": id, "href": path, "label": label, "active": *id == self.page})
            })
            .collect();
        let days = if ranged { self.days().ok() } else { None };
        let options: Vec<serde_json::Value> = DAY_OPTIONS
            .iter()
            .map(|d| {
                let mut q: Vec<(&str, String)> = self
                    .self_query()
                    .into_iter()
                    .filter(|(k, _)| *k != "days")
                    .collect();
                q.push(("days", d.to_string()));
                let qs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
                serde_json::json!({
                    "days": d,
                    "href": format!("{}?{}", self.path(), qs.join("&")),
                    "active": Some(*d) == days,
                })
            })
            .collect();
        serde_json::json!({
            "title": title,
            "page": self.page,
            "nav": nav,
            "csrf": self.signed.session.csrf,
            "ranged": ranged,
            "days": days,
            "day_options": options,
            "today": self.today.to_string(),
            "timezone": self.tz.name(),
            "generated": at(self.now.timestamp(), self.tz),
        })
    }

    /// The page, or with `?format=csv` one of its tables.
    fn respond(
        &self,
        template: &str,
        mut ctx: serde_json::Value,
        mut tables: Vec<Table>,
    ) -> Result<HttpResponse, DashboardError> {
        for t in &mut tables {
            t.csv_href = self.csv_href(t.name);
        }
        match self.q.format.as_deref().filter(|f| !f.is_empty()) {
            None | Some("html") => {}
            Some("csv") => return self.csv(&tables),
            Some(other) => {
                return Err(DashboardError::BadRequest(format!(
                    "`format` must be csv or html, not `{other}`"
                )))
            }
        }
        ctx["tables"] = serde_json::to_value(&tables)
            .map_err(|e| DashboardError::Render(template.into(), e.to_string()))?;
        let body = render(self.gw, template, &ctx)?;
        Ok(html(StatusCode::OK, body))
    }

    fn csv(&self, tables: &[Table]) -> Result<HttpResponse, DashboardError> {
        let names: Vec<&str> = tables.iter().map(|t| t.name).collect();
        let table = match self.q.table.as_deref().filter(|t| !t.is_empty()) {
            None if tables.len() == 1 => &tables[0],
            None => {
                return Err(DashboardError::BadRequest(format!(
                    "this page has several tables: add `table=` with one of {}",
                    names.join(", ")
                )))
            }
            Some(name) => tables.iter().find(|t| t.name == name).ok_or_else(|| {
                DashboardError::BadRequest(format!(
                    "no table `{name}` on this page (tables: {})",
                    names.join(", ")
                ))
            })?,
        };
        Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                "Content-Disposition",
                format!(
                    "attachment; filename=\"mpgate-{}-{}-{}.csv\"",
                    self.page, table.name, self.today
                ),
            ))
            .insert_header(("Cache-Control", "private, no-store"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(table.csv()))
    }
}

fn day_labels(days: &[crate::analytics::DayGrowth]) -> Vec<String> {
    days.iter()
        .map(|d| {
            d.day
                .map_or_else(String::new, |d| d.format("%m-%d").to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Pages

/// `GET /admin/dashboard`: today, 7 and 30 days, and the daily series of the chosen range.
pub async fn overview(
    gw: web::Data<Gateway>,
    signed: SignedIn,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, DashboardError> {
    let c = Ctx::new(&gw, &signed, &q, "overview");
    let days = c.days()?;
    let analytics = gw.analytics();
    let ov = analytics.overview(c.today)?;
    let series = if days == 30 && ov.series.len() == 30 {
        ov.series.clone()
    } else {
        analytics.growth(c.range()?, None)?
    };
    let mut windows = Table::new(
        "windows",
        "Followers, pushes and sales",
        &[
            "window",
            "follows",
            "unfollows",
            "net",
            "followers at end",
            "pushes",
            "paid orders",
            "revenue",
        ],
        "",
    );
    for (key, label, w) in [
        ("today", "Today", &ov.today),
        ("7d", "7 days", &ov.last_7),
        ("30d", "30 days", &ov.last_30),
    ] {
        windows.rows.push(vec![
            Cell::text(label),
            Cell::count(w.follows).figure(format!("follows-{key}")),
            Cell::count(w.unfollows).figure(format!("unfollows-{key}")),
            Cell::signed(w.net).figure(format!("net-{key}")),
            Cell::signed(w.cumulative).figure(format!("cumulative-{key}")),
            Cell::count(w.pushes).figure(format!("pushes-{key}")),
            Cell::count(w.paid_orders).figure(format!("paid-{key}")),
            Cell::money(w.revenue_fen).figure(format!("revenue-{key}")),
        ]);
    }
    let mut daily = Table::new(
        "days",
        &format!("Day by day, last {days} days"),
        &["day", "follows", "unfollows", "net", "followers at end"],
        "No days yet: follows and unfollows appear here day by day.",
    );
    for d in series.iter().rev() {
        let day = d.day.map_or_else(String::new, |d| d.to_string());
        daily.rows.push(vec![
            Cell::text(day.clone()),
            Cell::count(d.follows).figure(format!("day-{day}-follows")),
            Cell::count(d.unfollows).figure(format!("day-{day}-unfollows")),
            Cell::signed(d.net),
            Cell::signed(d.cumulative),
        ]);
    }
    let labels = day_labels(&series);
    let flow = svg::render(&Chart {
        title: format!("Follows and unfollows per day, last {days} days"),
        kind: Kind::Line,
        unit: Unit::Count,
        labels: labels.clone(),
        series: vec![
            Series {
                name: "follows".into(),
                values: series.iter().map(|d| d.follows as f64).collect(),
            },
            Series {
                name: "unfollows".into(),
                values: series.iter().map(|d| d.unfollows as f64).collect(),
            },
        ],
    });
    let total = svg::render(&Chart {
        title: format!("Followers at the end of each day, last {days} days"),
        kind: Kind::Line,
        unit: Unit::Count,
        labels,
        series: vec![Series {
            name: "followers".into(),
            values: series.iter().map(|d| d.cumulative as f64).collect(),
        }],
    });
    let t = &ov.today;
    let mut ctx = c.frame("Overview", true);
    ctx["cards"] = serde_json::json!([
        {"label": "Follows today", "value": t.follows.to_string()},
        {"label": "Unfollows today", "value": t.unfollows.to_string()},
        {"label": "Net today", "value": t.net.to_string()},
        {"label": "Followers", "value": t.cumulative.to_string()},
        {"label": "Pushes today", "value": t.pushes.to_string()},
        {"label": "Revenue today", "value": yuan(t.revenue_fen)},
    ]);
    ctx["charts"] = serde_json::json!([
        {"title": format!("Follows and unfollows, last {days} days"), "svg": flow},
        {"title": format!("Followers, last {days} days"), "svg": total},
    ]);
    c.respond("admin/overview.html", ctx, vec![windows, daily])
}

/// `GET /admin/dashboard/channels`: growth, early unfollows, conversion and revenue per QR
/// channel.
pub async fn channels(
    gw: web::Data<Gateway>,
    signed: SignedIn,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, DashboardError> {
    let c = Ctx::new(&gw, &signed, &q, "channels");
    let range = c.range()?;
    let rows = gw.analytics().channels(range)?;
    let mut t = Table::new(
        "channels",
        "Channels (QR scenes; “none” for follows without one)",
        &[
            "channel",
            "follows",
            "unfollows",
            "net",
            "followers at end",
            "first follows",
            "unfollowed within 7 d",
            "bought within 7 d",
            "bought within 30 d",
            "conversion 7 d",
            "conversion 30 d",
            "revenue",
            "revenue per follower",
        ],
        "No follows in this range yet: each QR channel (qrscene_…) gets a row here, and “none” counts follows without a scene.",
    );
    for r in &rows {
        let id = |what: &str| format!("channel-{}-{what}", r.channel);
        t.rows.push(vec![
            Cell::text(r.channel.clone()),
            Cell::count(r.follows).figure(id("follows")),
            Cell::count(r.unfollows).figure(id("unfollows")),
            Cell::signed(r.net).figure(id("net")),
            Cell::signed(r.cumulative).figure(id("cumulative")),
            Cell::count(r.first_follows).figure(id("first-follows")),
            Cell::pct(r.unfollow_7d_rate).figure(id("unfollow-7d")),
            Cell::count(r.first_purchase_7d),
            Cell::count(r.first_purchase_30d),
            Cell::pct(r.conversion_7d).figure(id("conversion-7d")),
            Cell::pct(r.conversion_30d).figure(id("conversion-30d")),
            Cell::money(r.revenue_fen).figure(id("revenue")),
            Cell::text(yuan_f(r.revenue_per_follower_fen)),
        ]);
    }
    let chart = svg::render(&Chart {
        title: "Follows and unfollows per channel".into(),
        kind: Kind::Bar,
        unit: Unit::Count,
        labels: rows.iter().map(|r| r.channel.clone()).collect(),
        series: vec![
            Series {
                name: "follows".into(),
                values: rows.iter().map(|r| r.follows as f64).collect(),
            },
            Series {
                name: "unfollows".into(),
                values: rows.iter().map(|r| r.unfollows as f64).collect(),
            },
        ],
    });
    let revenue = svg::render(&Chart {
        title: "Revenue per channel".into(),
        kind: Kind::Bar,
        unit: Unit::Fen,
        labels: rows.iter().map(|r| r.channel.clone()).collect(),
        series: vec![Series {
            name: "revenue".into(),
            values: rows.iter().map(|r| r.revenue_fen as f64).collect(),
        }],
    });
    let mut ctx = c.frame("Channels", true);
    ctx["charts"] = serde_json::json!([
        {"title": "Follows and unfollows per channel", "svg": chart},
        {"title": "Revenue per channel", "svg": revenue},
    ]);
    c.respond("admin/channels.html", ctx, vec![t])
}

/// `GET /admin/dashboard/retention`: daily cohorts of first follows, shaded by rate.
pub async fn retention(
    gw: web::Data<Gateway>,
    signed: SignedIn,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, DashboardError> {
    let c = Ctx::new(&gw, &signed, &q, "retention");
    let rows = gw.analytics().retention(c.range()?, c.today)?;
    let mut t = Table::new(
        "cohorts",
        "Cohorts of first follows: still following and active on day 1, 7 and 30",
        &[
            "first follow",
            "size",
            "day 1",
            "day 1 %",
            "day 7",
            "day 7 %",
            "day 30",
            "day 30 %",
            "unfollowed within 7 d",
            "unfollowed within 7 d %",
        ],
        "No first follows in this range yet: each day with new followers becomes a row, filled in as day 1, 7 and 30 come.",
    );
    for r in &rows {
        let day = r.day.map_or_else(String::new, |d| d.to_string());
        let id = |what: &str| format!("cohort-{day}-{what}");
        let kept = |n: Option<u64>, what: &str| -> [Cell; 2] {
            let rate = n.and_then(|n| ratio(n, r.size));
            [
                n.map_or_else(|| Cell::text("—"), Cell::count)
                    .figure(id(what)),
                Cell::pct(rate)
                    .shade(rate)
                    .figure(id(&format!("{what}-rate"))),
            ]
        };
        let [d1, d1r] = kept(r.day1, "day1");
        let [d7, d7r] = kept(r.day7, "day7");
        let [d30, d30r] = kept(r.day30, "day30");
        t.rows.push(vec![
            Cell::text(day.clone()),
            Cell::count(r.size).figure(id("size")),
            d1,
            d1r,
            d7,
            d7r,
            d30,
            d30r,
            Cell::count(r.unfollowed_7d).figure(id("unfollowed-7d")),
            Cell::pct(ratio(r.unfollowed_7d, r.size)),
        ]);
    }
    let ctx = c.frame("Retention", true);
    c.respond("admin/retention.html", ctx, vec![t])
}

/// `GET /admin/dashboard/articles`: teaser → page → order → paid → read per article, and sales.
pub async fn articles(
    gw: web::Data<Gateway>,
    signed: SignedIn,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, DashboardError> {
    let c = Ctx::new(&gw, &signed, &q, "articles");
    let range = c.range()?;
    let analytics = gw.analytics();
    let rows = analytics.funnel(range)?;
    let sales = analytics.sales(range)?;
    let rules = gw.rules().current();
    let mut t = Table::new(
        "funnel",
        "Articles: from teaser to reading",
        &[
            "article",
            "title",
            "teasers",
            "paywall pages",
            "orders",
            "paid",
            "reads",
            "page → paid",
            "revenue",
        ],
        "No article activity in this range yet: each paid article of keywords.toml gets a row once its teaser is sent.",
    );
    for r in &rows {
        let title = rules.article(&r.article).map_or_else(
            || "(no longer in keywords.toml)".to_string(),
            |a| a.title.clone(),
        );
        let id = |what: &str| format!("article-{}-{what}", r.article);
        t.rows.push(vec![
            Cell::text(r.article.clone()),
            Cell::text(title),
            Cell::count(r.teasers).figure(id("teasers")),
            Cell::count(r.pages).figure(id("pages")),
            Cell::count(r.orders).figure(id("orders")),
            Cell::count(r.paid).figure(id("paid")),
            Cell::count(r.reads).figure(id("reads")),
            Cell::pct(ratio(r.paid, r.pages)),
            Cell::money(r.revenue_fen).figure(id("revenue")),
        ]);
    }
    let mut s = Table::new(
        "sales",
        "Sales",
        &[
            "paid orders",
            "revenue",
            "refunds",
            "refunded",
            "buyers",
            "repeat buyers",
            "复购率 (repeat rate)",
            "客单价 (average order)",
        ],
        "",
    );
    s.rows.push(vec![
        Cell::count(sales.paid_orders).figure("sales-paid-orders"),
        Cell::money(sales.revenue_fen).figure("sales-revenue"),
        Cell::count(sales.refunds).figure("sales-refunds"),
        Cell::money(sales.refunded_fen).figure("sales-refunded"),
        Cell::count(sales.buyers).figure("sales-buyers"),
        Cell::count(sales.repeat_buyers).figure("sales-repeat-buyers"),
        Cell::pct(sales.repurchase_rate).figure("sales-repurchase-rate"),
        Cell::text(yuan_f(sales.average_order_fen)).figure("sales-average-order"),
    ]);
    let chart = svg::render(&Chart {
        title: "Paid orders per article".into(),
        kind: Kind::Bar,
        unit: Unit::Count,
        labels: rows.iter().map(|r| r.article.clone()).collect(),
        series: vec![
            Series {
                name: "pages".into(),
                values: rows.iter().map(|r| r.pages as f64).collect(),
            },
            Series {
                name: "paid".into(),
                values: rows.iter().map(|r| r.paid as f64).collect(),
            },
        ],
    });
    let mut ctx = c.frame("Articles", true);
    ctx["charts"] =
        serde_json::json!([{"title": "Paywall pages and paid orders per article", "svg": chart}]);
    c.respond("admin/articles.html", ctx, vec![s, t])
}

/// `GET /admin/dashboard/unanswered`: what subscribers asked that no rule answered.
pub async fn unanswered(
    gw: web::Data<Gateway>,
    signed: SignedIn,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, DashboardError> {
    let c = Ctx::new(&gw, &signed, &q, "unanswered");
    let rows = gw.analytics().unanswered(c.range()?, UNANSWERED_LIMIT)?;
    let mut t = Table::new(
        "texts",
        "Texts no rule answered (normalised as the rules see them), most frequent first",
        &["#", "text", "times", "last seen"],
        "Nothing yet: texts that fall through to the fallback reply are counted here (without who sent them).",
    );
    for (i, r) in rows.iter().enumerate() {
        t.rows.push(vec![
            // The number `mpgate simulate --unanswered K --days N` takes.
            Cell::count(i as u64 + 1),
            Cell::text(r.text.clone())
                .wrap()
                .figure(format!("unanswered-{i}-text")),
            Cell::count(r.count).figure(format!("unanswered-{i}-count")),
            Cell::text(r.last_day.map_or_else(String::new, |d| d.to_string())),
        ]);
    }
    let ctx = c.frame("Unanswered", true);
    c.respond("admin/unanswered.html", ctx, vec![t])
}

/// The assistant table's columns after the first (the day, or the range of the totals).
const ASSISTANT_COLUMNS: [&str; 14] = [
    "questions",
    "answers",
    "passive",
    "retry-held",
    "customer service",
    "pull (continue word)",
    "fallback",
    "refused",
    "teaser",
    "quota",
    "budget",
    "rate",
    "blocked",
    "tokens",
];

/// One row of the assistant's tables: `key` names its figures (`day-2026-12-03`, `total`).
fn assistant_row(first: String, key: &str, d: &crate::analytics::AssistantDay) -> Vec<Cell> {
    let a = &d.answers;
    let r = &d.refused;
    let figures = [
        ("questions", d.questions),
        ("answers", a.total()),
        ("passive", a.passive),
        ("retry-held", a.retry_held),
        ("customer-service", a.customer_service),
        ("pull", a.pull),
        ("fallback", a.fallback),
        ("refused", r.total()),
        ("teaser", r.teaser),
        ("quota", r.quota),
        ("budget", r.budget),
        ("rate", r.rate),
        ("blocked", r.blocked),
        ("tokens", d.tokens),
    ];
    let mut row = vec![Cell::text(first)];
    row.extend(
        figures
            .iter()
            .map(|(what, n)| Cell::count(*n).figure(format!("assistant-{key}-{what}"))),
    );
    row
}

/// `GET /admin/dashboard/assistant`: questions, answers by path, refusals by reason and tokens
/// per day of the range, their totals, and questions per rule.
pub async fn assistant(
    gw: web::Data<Gateway>,
    signed: SignedIn,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, DashboardError> {
    let c = Ctx::new(&gw, &signed, &q, "assistant");
    let days = c.days()?;
    let report = gw.analytics().assistant(c.range()?)?;
    let columns = |first: &'static str| {
        let mut cols = vec![first];
        cols.extend(ASSISTANT_COLUMNS);
        cols
    };
    let mut totals = Table::new(
        "totals",
        &format!("The assistant, last {days} days"),
        &columns("range"),
        "",
    );
    totals.rows.push(assistant_row(
        format!("last {days} days"),
        "total",
        &report.total,
    ));
    let mut daily = Table::new(
        "days",
        "Day by day: answers by how they reached the subscriber, refusals by reason",
        &columns("day"),
        "",
    );
    for d in report.days.iter().rev() {
        let day = d.day.map_or_else(String::new, |d| d.to_string());
        let key = format!("day-{day}");
        daily.rows.push(assistant_row(day, &key, d));
    }
    let mut rules = Table::new(
        "rules",
        "Questions per assistant rule",
        &["rule", "questions"],
        "No questions in this range yet: each rule with an assistant action gets a row once it takes one.",
    );
    for (rule, n) in &report.rules {
        rules.rows.push(vec![
            Cell::text(rule.clone()),
            Cell::count(*n).figure(format!("assistant-rule-{rule}-questions")),
        ]);
    }
    let labels: Vec<String> = report
        .days
        .iter()
        .map(|d| {
            d.day
                .map_or_else(String::new, |d| d.format("%m-%d").to_string())
        })
        .collect();
    let per_day = |f: fn(&crate::analytics::AssistantDay) -> u64| -> Vec<f64> {
        report.days.iter().map(|d| f(d) as f64).collect()
    };
    let chart = svg::render(&Chart {
        title: format!("Questions, answers and refusals per day, last {days} days"),
        kind: Kind::Line,
        unit: Unit::Count,
        labels: labels.clone(),
        series: vec![
            Series {
                name: "questions".into(),
                values: per_day(|d| d.questions),
            },
            Series {
                name: "answers".into(),
                values: per_day(|d| d.answers.total()),
            },
            Series {
                name: "refused".into(),
                values: per_day(|d| d.refused.total()),
            },
        ],
    });
    let tokens = svg::render(&Chart {
        title: format!("Tokens per day, last {days} days"),
        kind: Kind::Bar,
        unit: Unit::Count,
        labels,
        series: vec![Series {
            name: "tokens".into(),
            values: per_day(|d| d.tokens),
        }],
    });
    let t = &report.total;
    let mut ctx = c.frame("Assistant", true);
    ctx["cards"] = serde_json::json!([
        {"label": format!("Questions, {days} days"), "value": t.questions.to_string()},
        {"label": "Answers", "value": t.answers.total().to_string()},
        {"label": "Within 5 s (passive)", "value": percent(ratio(t.answers.passive, t.answers.total()))},
        {"label": "Fallbacks", "value": t.answers.fallback.to_string()},
        {"label": "Refused", "value": t.refused.total().to_string()},
        {"label": "Tokens", "value": t.tokens.to_string()},
    ]);
    ctx["charts"] = serde_json::json!([
        {"title": format!("Questions, answers and refusals, last {days} days"), "svg": chart},
        {"title": format!("Tokens, last {days} days"), "svg": tokens},
    ]);
    c.respond("admin/assistant.html", ctx, vec![totals, daily, rules])
}

/// `GET /admin/dashboard/handoffs`: conversations waiting for a person, longest first.
pub async fn handoffs(
    gw: web::Data<Gateway>,
    signed: SignedIn,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, DashboardError> {
    use crate::store::HandoffState;
    let c = Ctx::new(&gw, &signed, &q, "handoffs");
    let list = gw.handoffs().list(c.now.timestamp())?;
    let mut t = Table::new(
        "handoffs",
        "Open and queued hand-offs, longest waiting first",
        &["subscriber", "state", "agent", "rule", "opened", "waiting", "idle"],
        "No one is waiting: conversations handed to a person (a handoff rule) show here until they close.",
    );
    let (mut open, mut queued) = (0u64, 0u64);
    for (i, w) in list.iter().enumerate() {
        let s = &w.session;
        let state = match &s.state {
            HandoffState::Queued => {
                queued += 1;
                "queued"
            }
            HandoffState::Open => {
                open += 1;
                "open"
            }
            HandoffState::Taken { .. } => {
                open += 1;
                "taken"
            }
        };
        let agent = match &s.state {
            HandoffState::Taken { kf_account } => kf_account.clone(),
            _ => s.kf_account.clone().unwrap_or_default(),
        };
        t.rows.push(vec![
            Cell::text(s.openid.clone()).link(lookup_href(&s.openid)),
            Cell::text(state).figure(format!("handoff-{i}-state")),
            Cell::text(agent),
            Cell::text(s.rule.clone()),
            Cell::text(at(s.opened_at, c.tz)),
            Cell::text(span(w.waiting_secs)).figure(format!("handoff-{i}-waiting")),
            Cell::text(span(w.idle_secs)),
        ]);
    }
    let mut ctx = c.frame("Hand-offs", false);
    ctx["open"] = open.into();
    ctx["queued"] = queued.into();
    c.respond("admin/handoffs.html", ctx, vec![t])
}

/// `GET /admin/dashboard/outbox?state=failed|pending|sent|all`: customer-service messages, the
/// failed ones (with the platform's reason) by default.
pub async fn outbox(
    gw: web::Data<Gateway>,
    signed: SignedIn,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, DashboardError> {
    let c = Ctx::new(&gw, &signed, &q, "outbox");
    let state = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("failed");
    let filter: OutboxFilter = state.parse().map_err(DashboardError::BadRequest)?;
    let mut items = gw.operator().outbox(filter)?;
    let total = items.len();
    items.sort_by_key(|i| std::cmp::Reverse(i.id));
    items.truncate(LIST_LIMIT);
    let mut t = Table::new(
        "outbox",
        "Customer-service messages, newest first",
        &["id", "to", "from", "queued", "state", "attempts", "done", "reason"],
        match filter {
            OutboxFilter::Failed => "No failed messages: a message the platform refuses for good (or that runs out of retries) shows here with the reason.",
            OutboxFilter::Pending => "Nothing waiting to be sent.",
            _ => "No customer-service messages yet (they need MPGATE_APP_SECRET).",
        },
    );
    let ms = |t: i64| at(t.div_euclid(1000), c.tz);
    for i in &items {
        let (st, done, reason) = match &i.state {
            OutboxState::Pending => ("pending", String::new(), String::new()),
            OutboxState::Sent { at } => ("sent", ms(*at), String::new()),
            OutboxState::Failed { at, reason } => ("failed", ms(*at), reason.clone()),
        };
        let to = i.recipient().unwrap_or_default().to_string();
        t.rows.push(vec![
            Cell::count(i.id),
            Cell::text(to.clone()).link(lookup_href(&to)),
            Cell::text(i.origin.clone()),
            Cell::text(ms(i.created_at)),
            Cell::text(st),
            Cell::count(u64::from(i.attempts)),
            Cell::text(done),
            Cell::text(reason)
                .wrap()
                .figure(format!("outbox-{}-reason", i.id)),
        ]);
    }
    let mut ctx = c.frame("Outbox", false);
    ctx["state"] = state.into();
    ctx["states"] = serde_json::json!(["failed", "pending", "sent", "all"]);
    ctx["total"] = total.into();
    ctx["shown"] = items.len().into();
    c.respond("admin/outbox.html", ctx, vec![t])
}

/// `GET /admin/dashboard/orders?state=&days=`: orders created in the range, and payment
/// anomalies.
pub async fn orders(
    gw: web::Data<Gateway>,
    signed: SignedIn,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, DashboardError> {
    let c = Ctx::new(&gw, &signed, &q, "orders");
    let range = c.range()?;
    let state = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && *s != "all")
        .map(str::parse::<OrderState>)
        .transpose()
        .map_err(|e| DashboardError::BadRequest(format!("`state`: {e}")))?;
    let view = gw.operator().orders(&crate::operator::OrdersQuery {
        state,
        from: Some(range.from),
        to: Some(range.to),
        tz: c.tz,
    })?;
    let mut t = Table::new(
        "orders",
        "Orders, newest first",
        &[
            "order",
            "created",
            "article",
            "amount",
            "state",
            "channel",
            "paid",
            "subscriber",
        ],
        if gw.payments().is_some() {
            "No orders in this range: orders placed from the paywall page show here."
        } else {
            "No orders: WeChat Pay is off (MPGATE_PAY_MCH_ID); grants are made by hand or by a shop."
        },
    );
    let total = view.orders.len();
    for o in view.orders.iter().take(LIST_LIMIT) {
        t.rows.push(vec![
            Cell::text(o.out_trade_no.clone()),
            Cell::text(at(o.created_at, c.tz)),
            Cell::text(o.article.clone()),
            Cell::money(o.amount_fen).figure(format!("order-{}-amount", o.out_trade_no)),
            Cell::text(o.state.as_str()).figure(format!("order-{}-state", o.out_trade_no)),
            Cell::text(if o.channel.is_empty() {
                crate::analytics::NO_CHANNEL.to_string()
            } else {
                o.channel.clone()
            }),
            Cell::text(o.paid_at.map_or_else(String::new, |t| at(t, c.tz))),
            Cell::text(o.openid.clone()).link(lookup_href(&o.openid)),
        ]);
    }
    let mut a = Table::new(
        "anomalies",
        "Payment anomalies",
        &["at", "order", "kind", "detail"],
        "No anomalies: a verified payment event mpgate could not apply (unknown order, amount or payer mismatch) shows here.",
    );
    for x in view.anomalies.iter().take(LIST_LIMIT) {
        a.rows.push(vec![
            Cell::text(at(x.at, c.tz)),
            Cell::text(x.out_trade_no.clone()),
            Cell::text(x.kind.clone()),
            Cell::text(x.detail.clone()).wrap(),
        ]);
    }
    let mut ctx = c.frame("Orders", true);
    ctx["state"] = state.map_or("all", OrderState::as_str).into();
    ctx["states"] = serde_json::json!(["all", "created", "paid", "refunded", "closed", "anomaly"]);
    ctx["total"] = total.into();
    c.respond("admin/orders.html", ctx, vec![t, a])
}

/// What the last subscriber form did, shown after its 303.
fn done_message(done: &str, article: &str) -> Option<(&'static str, String)> {
    Some(match done {
        "granted" => ("ok", format!("Granted “{article}”.")),
        "already_granted" => (
            "ok",
            format!("“{article}” was already granted; nothing changed."),
        ),
        "revoked" => (
            "ok",
            format!("Revoked “{article}”: links already sent stop working."),
        ),
        "already_revoked" => (
            "ok",
            format!("“{article}” was already revoked; nothing changed."),
        ),
        "not_granted" => (
            "error",
            format!("“{article}” was never granted to this subscriber."),
        ),
        "reference_conflict" => (
            "error",
            "That reference is already used by another grant; nothing changed.".into(),
        ),
        "unknown_subscriber" => (
            "error",
            "mpgate has never seen this openid: tick “create” to grant anyway.".into(),
        ),
        _ => return None,
    })
}

/// An openid from the operator, parsed at the edge.
fn openid(v: &str) -> Result<OpenId, DashboardError> {
    OpenId::parse(v.trim()).map_err(|e| {
        DashboardError::BadRequest(format!(
            "openid {e} (an openid is 1-64 characters of A-Z a-z 0-9 - _)"
        ))
    })
}

/// `GET /admin/dashboard/subscribers?openid=`: one subscriber, their entitlements, and the
/// grant and revoke forms.
pub async fn subscribers(
    gw: web::Data<Gateway>,
    signed: SignedIn,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, DashboardError> {
    let c = Ctx::new(&gw, &signed, &q, "subscribers");
    let rules = gw.rules().current();
    let articles: Vec<serde_json::Value> = rules
        .articles()
        .iter()
        .map(|a| serde_json::json!({"id": a.id, "title": a.title, "price": a.price}))
        .collect();
    let mut ctx = c.frame("Subscribers", false);
    ctx["articles"] = articles.into();
    ctx["openid"] = serde_json::Value::Null;
    ctx["found"] = false.into();
    ctx["message"] = serde_json::Value::Null;
    ctx["active"] = serde_json::json!([]);
    let mut tables = Vec::new();
    if let Some(raw) = q.openid.as_deref().filter(|o| !o.trim().is_empty()) {
        let id = openid(raw)?;
        ctx["openid"] = id.as_str().into();
        if let Some(done) = q.done.as_deref() {
            if let Some((kind, text)) = done_message(done, q.article.as_deref().unwrap_or("")) {
                ctx["message"] = serde_json::json!({"kind": kind, "text": text});
            }
        }
        if let Some(view) = gw.operator().subscriber(&id)? {
            ctx["found"] = true.into();
            let s = &view.subscriber;
            let when = |t: Option<i64>| t.map_or_else(|| "—".to_string(), |t| at(t, c.tz));
            let mut rec = Table::new("subscriber", "Record", &["field", "value"], "");
            for (k, v, fig) in [
                ("openid", s.openid.clone(), "subscriber-openid"),
                (
                    "following",
                    if s.subscribed { "yes" } else { "no" }.to_string(),
                    "subscriber-following",
                ),
                (
                    "channel",
                    s.channel
                        .clone()
                        .unwrap_or_else(|| crate::analytics::NO_CHANNEL.into()),
                    "subscriber-channel",
                ),
                (
                    "first followed",
                    when(s.first_subscribed),
                    "subscriber-first",
                ),
                ("last followed", when(s.last_subscribed), "subscriber-last"),
                (
                    "unfollowed",
                    when(s.unsubscribed_at),
                    "subscriber-unfollowed",
                ),
                (
                    "last seen",
                    when((s.last_seen > 0).then_some(s.last_seen)),
                    "subscriber-last-seen",
                ),
                (
                    "messages",
                    s.message_count.to_string(),
                    "subscriber-messages",
                ),
                ("tags", s.tags.join(", "), "subscriber-tags"),
            ] {
                rec.rows
                    .push(vec![Cell::text(k), Cell::text(v).figure(fig)]);
            }
            let mut ents = Table::new(
                "entitlements",
                "Entitlements",
                &["article", "state", "granted", "by", "reference", "revoked"],
                "No entitlements: grant an article below.",
            );
            let mut active = Vec::new();
            for e in &view.entitlements {
                let state = if e.is_active() { "active" } else { "revoked" };
                if e.is_active() {
                    active.push(e.article.clone());
                }
                ents.rows.push(vec![
                    Cell::text(e.article.clone()),
                    Cell::text(state).figure(format!("entitlement-{}-state", e.article)),
                    Cell::text(at(e.granted_at, c.tz)),
                    Cell::text(e.source.clone()),
                    Cell::text(e.reference.clone().unwrap_or_default()),
                    Cell::text(e.revoked_at.map_or_else(String::new, |t| at(t, c.tz))),
                ]);
            }
            ctx["active"] = active.into();
            tables.push(rec);
            tables.push(ents);
        }
    }
    c.respond("admin/subscribers.html", ctx, tables)
}

#[derive(Deserialize)]
struct GrantForm {
    #[serde(default)]
    csrf: String,
    openid: Option<String>,
    article: Option<String>,
    reference: Option<String>,
    create: Option<String>,
}

fn field<'f>(v: &'f Option<String>, name: &str) -> Result<&'f str, DashboardError> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| DashboardError::BadRequest(format!("the form has no `{name}`")))
}

fn known_article(gw: &Gateway, article: &str) -> Result<(), DashboardError> {
    if gw.rules().current().article(article).is_some() {
        Ok(())
    } else {
        Err(DashboardError::NotFound(format!(
            "unknown article `{article}` (not declared in keywords.toml)"
        )))
    }
}

fn back_to(openid: &OpenId, done: &str, article: &str) -> HttpResponse {
    see_other(&format!(
        "{}&done={done}&article={}",
        lookup_href(openid.as_str()),
        enc(article)
    ))
}

/// `POST /admin/dashboard/subscribers/grant`: the JSON API's grant rule, from a form.
pub async fn grant(
    gw: web::Data<Gateway>,
    signed: SignedIn,
    Body(body): Body,
) -> Result<HttpResponse, DashboardError> {
    let f: GrantForm = form(&body)?;
    signed.check_csrf(&f.csrf)?;
    let id = openid(field(&f.openid, "openid")?)?;
    let article = field(&f.article, "article")?;
    known_article(&gw, article)?;
    let reference = f
        .reference
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let req = crate::operator::GrantRequest {
        openid: &id,
        article,
        source: "dashboard",
        reference,
        create: f.create.is_some(),
    };
    let done = match gw.operator().grant(&req, Utc::now().timestamp()) {
        Ok(GrantOutcome::Granted(_)) => "granted",
        Ok(GrantOutcome::AlreadyGranted(_)) => "already_granted",
        Ok(GrantOutcome::ReferenceConflict(_)) => "reference_conflict",
        Err(crate::operator::GrantError::UnknownSubscriber(_)) => "unknown_subscriber",
        Err(crate::operator::GrantError::Store(e)) => return Err(e.into()),
    };
    tracing::info!(article, status = done, "entitlement grant (dashboard)");
    Ok(back_to(&id, done, article))
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    csrf: String,
    openid: Option<String>,
    article: Option<String>,
}

/// `POST /admin/dashboard/subscribers/revoke`.
pub async fn revoke(
    gw: web::Data<Gateway>,
    signed: SignedIn,
    Body(body): Body,
) -> Result<HttpResponse, DashboardError> {
    let f: RevokeForm = form(&body)?;
    signed.check_csrf(&f.csrf)?;
    let id = openid(field(&f.openid, "openid")?)?;
    let article = field(&f.article, "article")?;
    known_article(&gw, article)?;
    let done = match gw.operator().revoke(&id, article, Utc::now().timestamp())? {
        RevokeOutcome::Revoked(_) => "revoked",
        RevokeOutcome::AlreadyRevoked(_) => "already_revoked",
        RevokeOutcome::NotGranted => "not_granted",
    };
    tracing::info!(article, status = done, "entitlement revoke (dashboard)");
    Ok(back_to(&id, done, article))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_yuan_with_two_decimals() {
        assert_eq!(yuan(0), "¥0.00");
        assert_eq!(yuan(1234), "¥12.34");
        assert_eq!(yuan(5), "¥0.05");
        assert_eq!(yuan_f(Some(1990.4)), "¥19.90");
        assert_eq!(yuan_f(None), "—");
        assert_eq!(Cell::money(1234).field(), Field::Number("12.34".into()));
        assert_eq!(Cell::money(7).field(), Field::Number("0.07".into()));
    }

    #[test]
    fn times_are_the_accounts_local_times() {
        // 2026-02-28 16:30 UTC is 2026-03-01 00:30 in Shanghai.
        assert_eq!(
            at(1_772_296_200, chrono_tz::Asia::Shanghai),
            "2026-03-01 00:30"
        );
        assert_eq!(at(1_772_296_200, chrono_tz::UTC), "2026-02-28 16:30");
    }

    #[test]
    fn waiting_times_read_as_people_say_them() {
        assert_eq!(span(-5), "0 s");
        assert_eq!(span(45), "45 s");
        assert_eq!(span(720), "12 min");
        assert_eq!(span(3 * 3600 + 300), "3 h 05 min");
        assert_eq!(span(2 * 86_400 + 4 * 3600), "2 d 4 h");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(enc("oAbc-_1"), "oAbc-_1");
        assert_eq!(enc("a b&c=d/课"), "a%20b%26c%3Dd%2F%E8%AF%BE");
    }

    #[test]
    fn retention_rates_shade_their_cells_by_how_many_stayed() {
        assert_eq!(
            Cell::pct(Some(0.5)).shade(Some(0.5)).shade.as_deref(),
            Some("0.40")
        );
        assert_eq!(
            Cell::pct(Some(1.0)).shade(Some(1.0)).shade.as_deref(),
            Some("0.80")
        );
        assert_eq!(
            Cell::pct(Some(0.0)).shade(Some(0.0)).shade.as_deref(),
            Some("0.00")
        );
        assert_eq!(Cell::pct(None).shade(None).shade, None, "a day yet to come");
        assert_eq!(Cell::pct(None).text, "—");
    }

    #[test]
    fn a_table_and_its_csv_hold_the_same_cells() {
        let mut t = Table::new("t", "", &["channel", "net", "revenue", "rate"], "");
        t.rows.push(vec![
            Cell::text("=evil"),
            Cell::signed(-3),
            Cell::money(1990),
            Cell::pct(Some(0.5)),
        ]);
        assert_eq!(
            t.csv(),
            "\u{feff}channel,net,revenue,rate\r\n\"'=evil\",-3,19.90,50.0%\r\n"
        );
    }
}
