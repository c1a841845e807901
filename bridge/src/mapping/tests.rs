//! Mapping cases from the issue, and the property: map then unmap gives back every valid
//! topic and filter.

use proptest::prelude::*;

use super::*;

fn tpl(t: &str, d: Direction) -> Mapping {
    Mapping::Template(Template::parse(t, d).unwrap())
}

#[test]
fn default_mapping_is_the_plain_one_for_plain_topics() {
    let m = Mapping::Default;
    assert_eq!(m.topic_to_key("e2e/dev1/temp").unwrap(), "e2e.dev1.temp");
    assert_eq!(m.key_to_topic("e2e.dev1.temp").unwrap(), "e2e/dev1/temp");
    assert_eq!(m.filter_to_pattern("e2e/+/temp/#").unwrap(), "e2e.*.temp.#");
    assert_eq!(m.pattern_to_filter("e2e.*.temp.#").unwrap(), "e2e/+/temp/#");
}

#[test]
fn default_mapping_keeps_dots_apart_from_levels() {
    let m = Mapping::Default;
    let a = m.topic_to_key("e2e/v1.2/data").unwrap();
    let b = m.topic_to_key("e2e/v1/2/data").unwrap();
    assert_eq!(a, "e2e.v1%2E2.data");
    assert_eq!(b, "e2e.v1.2.data");
    assert_eq!(m.key_to_topic(&a).unwrap(), "e2e/v1.2/data");
    assert_eq!(m.key_to_topic(&b).unwrap(), "e2e/v1/2/data");
    assert_eq!(m.topic_to_key("a/*/#x/100%").unwrap(), "a.%2A.%23x.100%25");
    assert_eq!(m.filter_to_pattern("a/*/+").unwrap(), "a.%2A.*");
}

#[test]
fn default_unmapping_is_lenient_with_foreign_keys_and_strict_with_topics() {
    let m = Mapping::Default;
    assert_eq!(m.key_to_topic("a.100%.b%zz").unwrap(), "a/100%/b%zz");
    assert_eq!(m.key_to_topic("a.%2e").unwrap(), "a/.");
    assert_eq!(m.key_to_topic("a.*").unwrap(), "a/*");
    assert!(m.key_to_topic("a.b+c").is_err());
    assert!(m.key_to_topic("a.#").is_err());
    assert!(m.key_to_topic("").is_err());
}

#[test]
fn rabbitmq_mapping_merges_dots_like_the_plugin() {
    let m = Mapping::RabbitMq;
    assert_eq!(m.topic_to_key("e2e/v1.2/data").unwrap(), "e2e.v1.2.data");
    assert_eq!(m.topic_to_key("e2e/v1/2/data").unwrap(), "e2e.v1.2.data");
    assert_eq!(m.key_to_topic("e2e.v1.2.data").unwrap(), "e2e/v1/2/data");
    assert_eq!(m.filter_to_pattern("a/+/#").unwrap(), "a.*.#");
    assert_eq!(m.pattern_to_filter("a.*.#").unwrap(), "a/+/#");
}

#[test]
fn templates_reorder_drop_and_prefix() {
    let out = tpl("site1.{3}.{2}", Direction::TopicToKey);
    assert_eq!(
        out.topic_to_key("e2e/dev1/temp").unwrap(),
        "site1.temp.dev1"
    );
    assert_eq!(out.topic_to_key("e2e/dev.1/t").unwrap(), "site1.t.dev%2E1");
    assert_eq!(
        out.topic_to_key("e2e/dev1"),
        Err(MappingError::MissingLevel(3, 2))
    );
    let rest = tpl("all.{2..}", Direction::TopicToKey);
    assert_eq!(rest.topic_to_key("x/a/b/c").unwrap(), "all.a.b.c");
    let back = tpl("devices/{2}/cmd/{3..}", Direction::KeyToTopic);
    assert_eq!(
        back.key_to_topic("cmd.dev1.reboot.now").unwrap(),
        "devices/dev1/cmd/reboot/now"
    );
    assert_eq!(
        back.key_to_topic("cmd.dev%2E1.x").unwrap(),
        "devices/dev.1/cmd/x"
    );
    assert_eq!(
        back.filter_to_pattern("a/#"),
        Err(MappingError::TemplateFilter)
    );
}

#[test]
fn template_syntax_errors() {
    let d = Direction::KeyToTopic;
    assert_eq!(Template::parse("", d), Err(TemplateError::Empty));
    assert_eq!(
        Template::parse("a/{1", d),
        Err(TemplateError::Unbalanced(2))
    );
    assert_eq!(Template::parse("a/}", d), Err(TemplateError::Unbalanced(2)));
    assert!(matches!(
        Template::parse("{0}", d),
        Err(TemplateError::BadPlaceholder(_))
    ));
    assert!(matches!(
        Template::parse("{x}", d),
        Err(TemplateError::BadPlaceholder(_))
    ));
    assert!(matches!(
        Template::parse("{+1}", d),
        Err(TemplateError::BadPlaceholder(_))
    ));
    assert!(matches!(
        Template::parse("a/+/{1}", d),
        Err(TemplateError::BadLiteral(_))
    ));
    assert!(Template::parse("a.*.{1}", Direction::TopicToKey).is_ok());
}

#[test]
fn keys_longer_than_255_bytes_are_refused() {
    let long = "a".repeat(256);
    assert_eq!(
        Mapping::Default.topic_to_key(&long),
        Err(MappingError::KeyTooLong(256))
    );
    assert!(Mapping::Default.topic_to_key(&"a".repeat(255)).is_ok());
}

/// A level of a topic name: any characters but `/`, `+`, `#`, NUL, biased towards the ones
/// the escaping is about.
fn level() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just('.'),
            Just('*'),
            Just('%'),
            Just('2'),
            Just('E'),
            Just('e'),
            Just('a'),
            Just('é'),
            Just(' '),
            any::<char>().prop_filter("not special", |c| !matches!(c, '/' | '+' | '#' | '\0')),
        ],
        0..6,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn topic_name() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..6)
        .prop_map(|ls| ls.join("/"))
        .prop_filter("valid and short", |t| {
            crate::topic::check_name(t).is_ok() && t.len() < 60
        })
}

fn filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![3 => level(), 1 => Just("+".to_string())], 1..6),
        any::<bool>(),
    )
        .prop_map(|(mut ls, hash)| {
            if hash {
                ls.push("#".into());
            }
            ls.join("/")
        })
        .prop_filter("valid and short", |f| {
            crate::topic::check_filter(f).is_ok() && f.len() < 60
        })
}

proptest! {
    #[test]
    fn default_topic_round_trip(t in topic_name()) {
        let key = Mapping::Default.topic_to_key(&t).unwrap();
        prop_assert_eq!(Mapping::Default.key_to_topic(&key).unwrap(), t);
    }

    #[test]
    fn default_filter_round_trip(f in filter()) {
        let p = Mapping::Default.filter_to_pattern(&f).unwrap();
        prop_assert_eq!(Mapping::Default.pattern_to_filter(&p).unwrap(), f);
    }

    #[test]
    fn default_mapping_is_injective(a in topic_name(), b in topic_name()) {
        if a != b {
            prop_assert_ne!(
                Mapping::Default.topic_to_key(&a).unwrap(),
                Mapping::Default.topic_to_key(&b).unwrap()
            );
        }
    }

    /// The plugin's mapping is reversible exactly for topics without `.` and `*`.
    #[test]
    fn rabbitmq_round_trip_without_dots_and_stars(t in topic_name(), f in filter()) {
        let m = Mapping::RabbitMq;
        if !t.contains(['.', '*']) {
            prop_assert_eq!(m.key_to_topic(&m.topic_to_key(&t).unwrap()).unwrap(), t);
        }
        if !f.split('/').any(|l| l.contains(['.', '*'])) {
            prop_assert_eq!(m.pattern_to_filter(&m.filter_to_pattern(&f).unwrap()).unwrap(), f);
        }
    }

    /// A template and its inverse give back the topic.
    #[test]
    fn template_round_trip(a in level(), b in level(), c in level()) {
        let t = format!("x/{a}/{b}/{c}");
        prop_assume!(crate::topic::check_name(&t).is_ok());
        let out = tpl("p.{4}.{2}.{3}", Direction::TopicToKey);
        let back = tpl("x/{3}/{4}/{2}", Direction::KeyToTopic);
        let key = out.topic_to_key(&t).unwrap();
        prop_assert_eq!(back.key_to_topic(&key).unwrap(), t);
    }
}
