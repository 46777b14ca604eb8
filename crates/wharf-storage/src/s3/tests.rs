#![allow(clippy::unwrap_used)]

use http::StatusCode;

use super::raw::classify;
use super::raw::wire::{Part, complete_body, encode, parse_upload_id};
use super::*;

#[test]
fn keys_are_percent_encoded_like_sigv4_canonical_paths() {
    assert_eq!(encode("a/b c/ü+x.txt", true), "a/b%20c/%C3%BC%2Bx.txt");
    assert_eq!(encode("a/b", false), "a%2Fb");
    assert_eq!(encode("AZaz09-_.~", true), "AZaz09-_.~");
    assert_eq!(encode("%&=?#", true), "%25%26%3D%3F%23");
}

#[test]
fn multipart_xml_is_built_and_parsed() {
    let parts = [
        Part {
            number: 1,
            etag: "\"abc\"".to_owned(),
        },
        Part {
            number: 2,
            etag: "\"d&e\"".to_owned(),
        },
    ];
    assert_eq!(
        complete_body(&parts),
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"abc\"</ETag></Part>\
         <Part><PartNumber>2</PartNumber><ETag>\"d&amp;e\"</ETag></Part></CompleteMultipartUpload>"
    );
    let initiate = br#"<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE-1.2_3</UploadId>
</InitiateMultipartUploadResult>"#;
    assert_eq!(
        parse_upload_id(initiate).as_deref(),
        Some("VXBsb2FkIElE-1.2_3")
    );
    assert_eq!(parse_upload_id(b"<Error><Code>x</Code></Error>"), None);
    assert_eq!(parse_upload_id(b"not xml"), None);
}

#[test]
fn s3_errors_map_to_our_kinds() {
    let check = |status: u16, code: &str, expected: (ErrorKind, bool)| {
        assert_eq!(
            classify(StatusCode::from_u16(status).unwrap(), code),
            expected,
            "{status} {code}"
        );
    };
    check(404, "NoSuchKey", (ErrorKind::NotFound, false));
    check(404, "NoSuchUpload", (ErrorKind::NotFound, false));
    check(404, "NoSuchBucket", (ErrorKind::Internal, false));
    check(403, "AccessDenied", (ErrorKind::PermissionDenied, false));
    check(503, "SlowDown", (ErrorKind::Unavailable, true));
    check(500, "InternalError", (ErrorKind::Unavailable, true));
    check(502, "", (ErrorKind::Unavailable, true));
    check(429, "", (ErrorKind::Unavailable, true));
    check(400, "RequestTimeout", (ErrorKind::Unavailable, true));
    check(400, "EntityTooSmall", (ErrorKind::Internal, false));
    check(409, "", (ErrorKind::Internal, false));
}

#[test]
fn configurations_are_checked_without_network() {
    let ok = S3Config::new("bucket");
    assert!(S3Store::new(ok.clone()).is_ok());
    let bad = |tweak: &dyn Fn(&mut S3Config)| {
        let mut config = ok.clone();
        tweak(&mut config);
        S3Store::new(config).unwrap_err()
    };
    assert!(
        bad(&|c| c.upload_part_size = 4 << 20)
            .message
            .contains("upload_part_size")
    );
    bad(&|c| c.upload_concurrency = 0);
    bad(&|c| c.bucket.clear());
    bad(&|c| c.list_page_size = 1001);
    bad(&|c| c.access_key_id = Some("only-the-id".to_owned()));
    bad(&|c| c.endpoint = Some("ftp://example.com".to_owned()));
    bad(&|c| c.endpoint = Some("not a url".to_owned()));
    bad(&|c| c.request_timeout = Duration::ZERO);
}

#[test]
fn bucket_urls_follow_the_addressing_style() {
    let mut config = S3Config::new("reports");
    assert_eq!(
        config.bucket_url().unwrap(),
        "https://s3.us-east-1.amazonaws.com/reports"
    );
    config.path_style = false;
    config.region = "eu-west-3".to_owned();
    assert_eq!(
        config.bucket_url().unwrap(),
        "https://reports.s3.eu-west-3.amazonaws.com"
    );
    config.endpoint = Some("http://127.0.0.1:9000/".to_owned());
    assert_eq!(
        config.bucket_url().unwrap(),
        "http://reports.127.0.0.1:9000"
    );
    config.path_style = true;
    assert_eq!(
        config.bucket_url().unwrap(),
        "http://127.0.0.1:9000/reports"
    );
}

#[test]
fn the_secret_is_not_in_debug_output() {
    let mut config = S3Config::new("b");
    config.access_key_id = Some("AKIDEXAMPLE".to_owned());
    config.secret_access_key = Some("wJalrXUtnFEMI/K7MDENG".to_owned());
    let shown = format!("{config:?}");
    assert!(shown.contains("AKIDEXAMPLE"));
    assert!(!shown.contains("wJalrXUtnFEMI"));
    assert!(shown.contains("<redacted>"));
}

#[test]
fn multipart_copies_are_split_into_at_most_ten_thousand_parts() {
    assert_eq!(
        copy::ranges(12, 5),
        vec![(1, 0, 5), (2, 5, 10), (3, 10, 12)]
    );
    assert_eq!(copy::ranges(10, 5), vec![(1, 0, 5), (2, 5, 10)]);
    let huge = 5u64 << 40; // 5 TiB, S3's largest object
    let parts = copy::ranges(huge, 512 << 20);
    assert!(parts.len() <= 10_000);
    assert_eq!(parts.last().unwrap().2, huge);
    assert!(parts.windows(2).all(|w| w[0].2 == w[1].1));
    assert!(parts.iter().all(|(_, start, end)| end - start <= 5 << 30));
}

#[test]
fn listed_keys_become_children_once() {
    use super::lister::{SeenDirs, child};
    assert_eq!(child("d/", "d/f.txt", false), Some(("f.txt", false)));
    assert_eq!(child("d/", "d/x/", true), Some(("x", true)));
    assert_eq!(child("d/", "/d/x/", true), Some(("x", true)));
    assert_eq!(child("", "top", false), Some(("top", false)));
    // The directory's own marker, keys elsewhere, unusable names.
    assert_eq!(child("d/", "d/", true), None);
    assert_eq!(child("d/", "e/f", false), None);
    assert_eq!(child("d/", "d//", true), None);
    assert_eq!(child("d/", "d/../", true), None);
    assert_eq!(child("d/", "d/a/b", false), None);

    // A marker `x/` listed as an object and as a common prefix: once.
    let mut seen = SeenDirs::new(2);
    assert!(seen.first_time("x"));
    assert!(!seen.first_time("x"));
    assert!(seen.first_time("y"));
    assert!(seen.first_time("z"));
    // Memory stays bounded: the oldest name is forgotten.
    assert!(seen.first_time("x"));
}

#[test]
fn parses_object_tagging() {
    use super::raw::wire::parse_tagging;
    let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>
  <Tag><Key>classification</Key><Value>public</Value></Tag>
  <Tag><Key>empty</Key><Value></Value></Tag>
</TagSet></Tagging>"#;
    assert_eq!(
        parse_tagging(body),
        Some(vec![
            ("classification".to_owned(), "public".to_owned()),
            ("empty".to_owned(), String::new()),
        ])
    );
    let untagged = br#"<Tagging><TagSet></TagSet></Tagging>"#;
    assert_eq!(parse_tagging(untagged), Some(vec![]));
    assert_eq!(parse_tagging(b"not xml"), None);
}
