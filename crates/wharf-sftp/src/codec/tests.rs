#![allow(clippy::unwrap_used)]
use super::*;

fn packet(kind: u8, id: u32, body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u8(kind);
    buf.put_u32(id);
    body(&mut buf);
    buf.freeze()
}

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u32(s.len() as u32);
    buf.put_slice(s);
}

#[test]
fn decodes_requests() {
    let open = packet(SSH_FXP_OPEN, 7, |b| {
        put_str(b, b"/a.txt");
        b.put_u32(SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_TRUNC);
        b.put_u32(ATTR_PERMISSIONS | ATTR_ACMODTIME);
        b.put_u32(0o644);
        b.put_u32(1);
        b.put_u32(2);
    });
    assert_eq!(
        decode_request(open).unwrap(),
        (
            7,
            Request::Open {
                path: "/a.txt".into(),
                flags: 0x1a,
                attrs: Attrs {
                    permissions: Some(0o644),
                    times: Some((1, 2)),
                    ..Attrs::default()
                }
            }
        )
    );
    let write = packet(SSH_FXP_WRITE, 9, |b| {
        put_str(b, b"h1");
        b.put_u64(1 << 40);
        put_str(b, b"payload");
    });
    let (id, request) = decode_request(write).unwrap();
    assert_eq!(id, 9);
    assert_eq!(
        request,
        Request::Write {
            handle: Bytes::from_static(b"h1"),
            offset: 1 << 40,
            data: Bytes::from_static(b"payload")
        }
    );
    let rename = packet(SSH_FXP_EXTENDED, 3, |b| {
        put_str(b, b"posix-rename@openssh.com");
        put_str(b, b"/a");
        put_str(b, b"/b");
    });
    assert_eq!(
        decode_request(rename).unwrap().1,
        Request::PosixRename {
            from: "/a".into(),
            to: "/b".into()
        }
    );
    assert_eq!(
        decode_request(packet(99, 1, |_| {})).unwrap().1,
        Request::Unknown { kind: 99 }
    );
}

#[test]
fn malformed_packets_are_errors_not_panics() {
    let cases: Vec<Bytes> = vec![
        Bytes::new(),
        Bytes::from_static(&[SSH_FXP_OPEN]),
        packet(SSH_FXP_OPEN, 1, |b| b.put_u32(100)),
        packet(SSH_FXP_READ, 1, |b| put_str(b, b"h")),
        packet(SSH_FXP_WRITE, 1, |b| {
            put_str(b, b"h");
            b.put_u64(0);
            b.put_u32(u32::MAX);
        }),
        packet(SSH_FXP_SETSTAT, 1, |b| {
            put_str(b, b"/x");
            b.put_u32(ATTR_EXTENDED);
            b.put_u32(u32::MAX);
        }),
    ];
    for case in cases {
        assert!(decode_request(case.clone()).is_err(), "{case:?}");
    }
    // A path in another encoding is answered, not fatal.
    assert_eq!(
        decode_request(packet(SSH_FXP_STAT, 7, |b| put_str(b, &[0xff, 0xfe]))).unwrap(),
        (7, Request::NotUtf8)
    );
}

#[test]
fn encodes_replies() {
    let reply = status(5, StatusCode::NoSuchFile, "No such file");
    assert_eq!(&reply[..4], &((reply.len() - 4) as u32).to_be_bytes());
    assert_eq!(reply[4], SSH_FXP_STATUS);
    assert_eq!(&reply[5..9], &5u32.to_be_bytes());
    assert_eq!(&reply[9..13], &2u32.to_be_bytes());
    let a = attrs(
        1,
        &Attrs {
            size: Some(10),
            permissions: Some(0o100644),
            times: Some((3, 4)),
            uid_gid: None,
        },
    );
    let mut body = a.slice(9..);
    assert_eq!(get_attrs(&mut body).unwrap().size, Some(10));
}

#[test]
fn encodes_version_with_extensions() {
    let mut expected = BytesMut::new();
    expected.put_u8(SSH_FXP_VERSION);
    expected.put_u32(3);
    put_str(&mut expected, b"limits@openssh.com");
    put_str(&mut expected, b"1");
    let mut framed = (expected.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&expected);
    assert_eq!(&version(&[("limits@openssh.com", "1")])[..], &framed[..]);
}

#[test]
fn encodes_data_read_in_place() {
    let mut buf = start_data(7, 5);
    assert_eq!(finish_data(buf.clone()), None, "no data is no DATA reply");
    buf.extend_from_slice(b"hello");
    let reply = finish_data(buf).unwrap();
    assert_eq!(&reply[..4], &((reply.len() - 4) as u32).to_be_bytes());
    assert_eq!(reply[4], SSH_FXP_DATA);
    assert_eq!(&reply[5..9], &7u32.to_be_bytes());
    assert_eq!(&reply[9..13], &5u32.to_be_bytes());
    assert_eq!(&reply[13..], b"hello");
}
