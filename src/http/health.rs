//! `GET /healthz` for load balancers: cheap, and says which rules version is live.

use actix_web::{web, HttpResponse};

use crate::pipeline::Gateway;

pub async fn healthz(gw: web::Data<Gateway>) -> HttpResponse {
    let rules = gw.rules().current();
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "rules_version": rules.version(),
    }))
}
