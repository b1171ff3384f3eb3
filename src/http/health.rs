//! `GET /healthz` for load balancers and the container's HEALTHCHECK: cheap, says which rules
//! version is live, and answers 503 with the reason while the store cannot write (a full or
//! failing disk), so that traffic moves away and an operator sees why.

use actix_web::{web, HttpResponse};

use crate::pipeline::Gateway;

pub async fn healthz(gw: web::Data<Gateway>) -> HttpResponse {
    let rules = gw.rules().current();
    let health = gw.store_health();
    if health.writable {
        return HttpResponse::Ok().json(serde_json::json!({
            "status": "ok",
            "rules_version": rules.version(),
        }));
    }
    HttpResponse::ServiceUnavailable().json(serde_json::json!({
        "status": "unavailable",
        "store": format!(
            "not writable: {}",
            health.error.as_deref().unwrap_or("the last write failed")
        ),
        "failing_since": health.failing_since,
        "unwritten": health.unwritten,
        "rules_version": rules.version(),
    }))
}
