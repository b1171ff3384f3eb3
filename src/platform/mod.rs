//! Outbound client for the WeChat platform API (issue 5).
