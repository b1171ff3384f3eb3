//! Passive replies as types, rendered to the XML the platform accepts.

/// What mpgate answers a push with.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// No reply: the body `success`, which the platform takes as "handled, show nothing".
    None,
    Text {
        content: String,
    },
    Image {
        media_id: String,
    },
    Voice {
        media_id: String,
    },
    Video {
        media_id: String,
        title: Option<String>,
        description: Option<String>,
    },
    Music {
        title: Option<String>,
        description: Option<String>,
        music_url: Option<String>,
        hq_music_url: Option<String>,
        thumb_media_id: String,
    },
    News {
        articles: Vec<Article>,
    },
    /// Hand the conversation to human customer service, optionally to one agent.
    TransferCustomerService {
        kf_account: Option<String>,
    },
}

/// One item of a news reply.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Article {
    pub title: String,
    pub description: String,
    pub pic_url: String,
    pub url: String,
}
