//! The one table of the platform's `MsgType` and `Event` names.
//!
//! Each row spells a name once: how the platform sends it (the canonical spelling, which
//! [`super::message::Inbound::to_xml`] writes back), the log/counter label derived from it, how
//! the rules file names it (`msg_type = "…"`, `event = "…"`; absent when rules cannot match it)
//! and, for events, what `EventKey` holds. The message parser, the rules compiler (with its
//! did-you-mean), `mpgate simulate` and the tests read names from here instead of retyping them.
//!
//! Lookups are case-insensitive, as the platform has sent `SUBSCRIBE` and `Scan` in the wild.
//! They scan a table of at most 18 rows, comparing lengths first: as cheap as the `match` on a
//! lower-cased copy they replace. May depend on: std only.

/// Declares one name table: an enum with a row per variant and its lookups.
macro_rules! name_table {
    (
        $(#[$meta:meta])*
        $ty:ident, label $prefix:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $wire:literal
                $(, rules $rules:literal)? $(, key $key:literal)? ; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $ty {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $ty {
            /// Every row, in table order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            /// The name as the platform spells it.
            pub const fn wire(self) -> &'static str {
                match self { $($ty::$variant => $wire,)* }
            }

            /// The label logs and counters use (`text`, `event:CLICK`), without allocating.
            pub const fn type_label(self) -> &'static str {
                match self { $($ty::$variant => concat!($prefix, $wire),)* }
            }

            /// How the rules file names it; `None` when no rule can match it.
            pub const fn rules_name(self) -> Option<&'static str> {
                match self { $($ty::$variant => name_table!(@opt $($rules)?),)* }
            }

            /// What the push's key holds (`scene`, `key`, `url`, `page`), if anything.
            pub const fn key_meaning(self) -> Option<&'static str> {
                match self { $($ty::$variant => name_table!(@opt $($key)?),)* }
            }

            /// The name followed by what its key holds (`CLICK key`, `SCAN scene`): how a
            /// routing decision explains a match on it.
            pub const fn described(self) -> &'static str {
                match self { $($ty::$variant => concat!($wire $(, " ", $key)?),)* }
            }

            /// The row whose platform spelling is `name`, in any case.
            pub fn parse(name: &str) -> Option<$ty> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|t| t.wire().eq_ignore_ascii_case(name))
            }
        }
    };
    (@opt $v:literal) => { Some($v) };
    (@opt) => { None };
}

name_table! {
    /// A push's `MsgType`.
    MsgType, label "" {
        Text => "text", rules "text";
        Image => "image", rules "image";
        Voice => "voice", rules "voice";
        Video => "video", rules "video";
        ShortVideo => "shortvideo", rules "shortvideo";
        Location => "location", rules "location";
        Link => "link", rules "link";
        File => "file", rules "file";
        /// Not a message: the push carries an [`EventType`].
        Event => "event";
    }
}

name_table! {
    /// An event push's `Event`.
    EventType, label "event:" {
        /// A follow; a QR-code scene, when there is one, is the rules' `channel`.
        Subscribe => "subscribe", rules "subscribe";
        Unsubscribe => "unsubscribe";
        Scan => "SCAN", rules "scan", key "scene";
        Location => "LOCATION", rules "location";
        Click => "CLICK", rules "click", key "key";
        View => "VIEW", rules "view", key "url";
        ScancodePush => "scancode_push", rules "scancode_push", key "key";
        ScancodeWaitmsg => "scancode_waitmsg", rules "scancode_waitmsg", key "key";
        PicSysphoto => "pic_sysphoto", rules "pic_sysphoto", key "key";
        PicPhotoOrAlbum => "pic_photo_or_album", rules "pic_photo_or_album", key "key";
        PicWeixin => "pic_weixin", rules "pic_weixin", key "key";
        LocationSelect => "location_select", rules "location_select", key "key";
        ViewMiniprogram => "view_miniprogram", rules "view_miniprogram", key "page";
        TemplateSendJobFinish => "TEMPLATESENDJOBFINISH";
        MassSendJobFinish => "MASSSENDJOBFINISH";
        KfCreateSession => "kf_create_session";
        KfCloseSession => "kf_close_session";
        KfSwitchSession => "kf_switch_session";
    }
}

impl MsgType {
    /// The message type a rules file's `msg_type = "…"` names (exact spelling, as always).
    pub fn from_rules_name(name: &str) -> Option<MsgType> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.rules_name() == Some(name))
    }

    /// Every name `msg_type` accepts, in table order (for help texts and did-you-mean).
    pub fn rules_names() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().filter_map(|t| t.rules_name())
    }
}

impl EventType {
    /// The event a rules file's `event = "…"` names, in any case.
    pub fn from_rules_name(name: &str) -> Option<EventType> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.rules_name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
    }

    /// Every name `event` accepts, in table order (for help texts and did-you-mean).
    pub fn rules_names() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().filter_map(|t| t.rules_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_row_in_any_case() {
        for &t in MsgType::ALL {
            assert_eq!(MsgType::parse(t.wire()), Some(t));
            assert_eq!(MsgType::parse(&t.wire().to_ascii_uppercase()), Some(t));
        }
        for &e in EventType::ALL {
            assert_eq!(EventType::parse(e.wire()), Some(e));
            assert_eq!(EventType::parse(&e.wire().to_ascii_lowercase()), Some(e));
        }
        assert_eq!(EventType::parse("subscribe_msg_popup_event"), None);
        assert_eq!(MsgType::parse("miniprogrampage"), None);
    }

    #[test]
    fn labels_are_the_wire_name_with_events_prefixed() {
        assert_eq!(MsgType::Text.type_label(), "text");
        assert_eq!(EventType::Click.type_label(), "event:CLICK");
        assert_eq!(
            EventType::TemplateSendJobFinish.type_label(),
            "event:TEMPLATESENDJOBFINISH"
        );
        for &e in EventType::ALL {
            assert_eq!(e.type_label(), format!("event:{}", e.wire()));
        }
    }

    #[test]
    fn rules_names_are_the_lower_case_wire_names_of_routable_rows() {
        for &e in EventType::ALL {
            if let Some(n) = e.rules_name() {
                assert_eq!(n, e.wire().to_ascii_lowercase());
                assert_eq!(EventType::from_rules_name(&n.to_ascii_uppercase()), Some(e));
            }
        }
        let events: Vec<_> = EventType::rules_names().collect();
        assert_eq!(events.len(), 12, "{events:?}");
        assert_eq!(EventType::from_rules_name("unsubscribe"), None);
        assert_eq!(EventType::from_rules_name("kf_close_session"), None);
        let msgs: Vec<_> = MsgType::rules_names().collect();
        assert_eq!(
            msgs,
            [
                "text",
                "image",
                "voice",
                "video",
                "shortvideo",
                "location",
                "link",
                "file"
            ]
        );
        // `msg_type` has always been case-sensitive; `event` has not.
        assert_eq!(MsgType::from_rules_name("Text"), None);
        assert_eq!(MsgType::from_rules_name("event"), None);
    }

    #[test]
    fn a_match_is_explained_by_the_name_and_what_its_key_holds() {
        assert_eq!(EventType::Scan.described(), "SCAN scene");
        assert_eq!(EventType::Click.described(), "CLICK key");
        assert_eq!(EventType::View.described(), "VIEW url");
        assert_eq!(
            EventType::ViewMiniprogram.described(),
            "view_miniprogram page"
        );
        assert_eq!(EventType::Subscribe.described(), "subscribe");
        assert_eq!(EventType::Location.described(), "LOCATION");
        assert_eq!(EventType::Click.key_meaning(), Some("key"));
        assert_eq!(EventType::Location.key_meaning(), None);
    }
}
