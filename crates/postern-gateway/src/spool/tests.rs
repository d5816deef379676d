//! Tests of the spool: what a crash leaves, recycling, modes, the admin reads.

#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::Path;
use std::sync::Arc;

use super::format::{FOOTER_LEN, Footer};
use super::id::IdGenerator;
use super::writer::WRITE_CHUNK;
use super::*;

impl Spool {
    /// The directory holding message files.
    fn messages_dir(&self) -> &Path {
        &self.inner.messages
    }
}

fn test_metrics() -> Arc<crate::metrics::Metrics> {
    Arc::new(crate::metrics::Metrics::new(&[]).unwrap())
}

fn envelope(id: &str) -> Envelope {
    Envelope {
        id: id.to_owned(),
        sender: "a@example.com".into(),
        recipients: vec!["b@example.net".into()],
        received_at: 1,
        received_at_ms: 1000,
        client_ip: "127.0.0.1".into(),
        helo: "client".into(),
        auth_user: None,
        listener: "submission".into(),
        smtputf8: false,
        eight_bit: false,
    }
}

#[tokio::test]
async fn commit_then_recover() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, found) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
    assert!(found.is_empty());
    let mut w = spool.create();
    let id = w.id().to_owned();
    // Larger than one chunk, so the file is written before commit.
    let body = vec![b'x'; WRITE_CHUNK * 2 + 17];
    w.write(&body).await.unwrap();
    w.commit(&envelope(&id)).await.unwrap();
    let mut out = Vec::new();
    admin::show(dir.path(), &id, &mut out).unwrap();
    assert_eq!(out, body);
    let (_, found) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].envelope.id, id);
    assert_eq!(found[0].size, body.len() as u64);
}

#[tokio::test]
async fn partial_and_damaged_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
    let mut w = spool.create();
    let id = w.id().to_owned();
    w.write(b"hello\r\n").await.unwrap();
    w.commit(&envelope(&id)).await.unwrap();
    let good = spool.messages_dir().join(&id);
    let full = fs::read(&good).unwrap();
    // A file cut anywhere, and one with a flipped byte, are not messages.
    for cut in [0, 3, full.len() - 1] {
        fs::write(spool.messages_dir().join(format!("CUT{cut}")), &full[..cut]).unwrap();
    }
    let mut flipped = full.clone();
    flipped[0] ^= 1;
    fs::write(spool.messages_dir().join("FLIP"), &flipped).unwrap();
    assert_eq!(admin::list(dir.path()).unwrap().len(), 1);
    let (_, found) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(fs::read_dir(spool.messages_dir()).unwrap().count(), 1);
}

#[tokio::test]
async fn aborted_and_dropped_writers_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
    let mut w = spool.create();
    w.write(&vec![b'y'; WRITE_CHUNK + 1]).await.unwrap();
    w.abort().await;
    let mut w = spool.create();
    w.write(&vec![b'y'; WRITE_CHUNK + 1]).await.unwrap();
    drop(w);
    assert_eq!(fs::read_dir(spool.messages_dir()).unwrap().count(), 0);
}

async fn store(spool: &Spool, body: &[u8]) -> String {
    let mut w = spool.create();
    let id = w.id().to_owned();
    w.write(body).await.unwrap();
    w.commit(&envelope(&id)).await.unwrap();
    id
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn delivered_files_are_recycled_and_overwritten_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
    let long = store(&spool, &vec![b'a'; 5000]).await;
    spool.remove(&long).await;
    assert_eq!(names(&dir.path().join("free")), vec![long.clone()]);
    // The next message takes that file: shorter, so the old tail must be cut.
    let short = store(&spool, b"short\r\n").await;
    assert!(names(&dir.path().join("free")).is_empty());
    assert_eq!(names(spool.messages_dir()), vec![short.clone()]);
    let mut out = Vec::new();
    admin::show(dir.path(), &short, &mut out).unwrap();
    assert_eq!(out, b"short\r\n");
    let (_, found) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].envelope.id, short);
    // A streamed (large) message into a recycled file.
    spool.remove(&short).await;
    let big = vec![b'b'; WRITE_CHUNK + 3];
    let id = store(&spool, &big).await;
    let mut out = Vec::new();
    admin::show(dir.path(), &id, &mut out).unwrap();
    assert_eq!(out, big);
}

#[tokio::test]
async fn mail_is_private_to_the_gateway_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(&dir.path().join("spool"), 10, test_metrics()).unwrap();
    let id = store(&spool, b"secret\r\n").await;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(spool.messages_dir()), 0o700);
    assert_eq!(mode(&dir.path().join("spool/free")), 0o700);
    assert_eq!(mode(&spool.messages_dir().join(&id)), 0o600);
    // A spool left by an older version with wider modes is made private, and so is
    // a recycled file when it is reused.
    drop(spool);
    let open_up = |p: &Path, m| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    open_up(&dir.path().join("spool/messages"), 0o755);
    open_up(&dir.path().join("spool/messages").join(&id), 0o644);
    let (spool, _) = Spool::open(&dir.path().join("spool"), 10, test_metrics()).unwrap();
    assert_eq!(mode(spool.messages_dir()), 0o700);
    spool.remove(&id).await;
    let next = store(&spool, b"next\r\n").await;
    assert!(names(&dir.path().join("spool/free")).is_empty());
    assert_eq!(mode(&spool.messages_dir().join(next)), 0o600);
}

#[tokio::test]
async fn recycling_is_bounded_by_count_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 1, test_metrics()).unwrap();
    let big = store(&spool, &vec![b'x'; RECYCLE_MAX_LEN as usize]).await;
    let a = store(&spool, b"a\r\n").await;
    let b = store(&spool, b"b\r\n").await;
    for id in [&big, &a, &b] {
        spool.remove(id).await;
    }
    // Too big to keep; then room for one.
    assert_eq!(names(&dir.path().join("free")), vec![a.clone()]);
    assert!(names(spool.messages_dir()).is_empty());
    // Reopened with no room, the pool is emptied.
    drop(spool);
    let (spool, _) = Spool::open(dir.path(), 0, test_metrics()).unwrap();
    assert!(names(&dir.path().join("free")).is_empty());
    let c = store(&spool, b"c\r\n").await;
    spool.remove(&c).await;
    assert!(names(&dir.path().join("free")).is_empty());
}

#[tokio::test]
async fn a_whole_old_message_under_a_new_name_is_not_recovered() {
    // What a crash leaves when a recycled file was renamed to a new ID but none of
    // the new content reached the disk.
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
    let old = store(&spool, b"old\r\n").await;
    fs::rename(
        spool.messages_dir().join(&old),
        spool.messages_dir().join("NEWID"),
    )
    .unwrap();
    assert!(admin::list(dir.path()).unwrap().is_empty());
    let (_, found) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
    assert!(found.is_empty());
    assert!(names(spool.messages_dir()).is_empty());
}

#[test]
fn ids_are_unique_and_ordered() {
    let g = IdGenerator::new();
    let a = g.next();
    let b = g.next();
    assert_ne!(a, b);
    assert_eq!(a.len(), 15);
    assert!(a[..11] <= b[..11]);
}

#[test]
fn footers_round_trip_and_garbage_is_no_footer() {
    let f = Footer {
        body_len: 0x1234,
        env_len: 99,
        crc: 0xdead_beef,
    };
    let bytes: [u8; FOOTER_LEN] = f.encode().try_into().unwrap();
    assert_eq!(Footer::parse(&bytes), Some(f));
    let mut bad = bytes;
    bad[1] = b'X';
    assert_eq!(Footer::parse(&bad), None);
    assert_eq!(Footer::parse(&[b' '; FOOTER_LEN]), None);
}

#[tokio::test]
async fn bodies_are_read_through_the_spool() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
    let id = store(&spool, b"Subject: x\r\n\r\nbody\r\n").await;
    assert!(spool.missing(vec![id.clone()]).await.is_empty());
    let mut out = Vec::new();
    let mut body = spool.open_body(&id, 20).await.unwrap();
    body.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"Subject: x\r\n\r\nbody\r\n");
    // Only the start, when asked for less.
    let mut out = Vec::new();
    let mut head = spool.open_body(&id, 10).await.unwrap();
    head.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"Subject: x");
    spool.remove(&id).await;
    assert_eq!(spool.missing(vec![id.clone()]).await, vec![id.clone()]);
    assert!(spool.open_body(&id, 20).await.is_err());
}

#[tokio::test]
async fn admin_delete_removes_the_message_and_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
    let states = spool.state_store().unwrap();
    let id = store(&spool, b"doomed\r\n").await;
    states.write(&id, b"{}".to_vec()).await.unwrap();
    assert!(matches!(
        admin::delete(dir.path(), "../x"),
        Err(SpoolError::InvalidId(_))
    ));
    admin::delete(dir.path(), &id).unwrap();
    assert!(admin::list(dir.path()).unwrap().is_empty());
    assert_eq!(admin::states(dir.path()).read_blocking(&id), None);
    assert!(matches!(
        admin::delete(dir.path(), &id),
        Err(SpoolError::NotFound(_))
    ));
    assert!(matches!(
        admin::show(dir.path(), &id, &mut Vec::new()),
        Err(SpoolError::NotFound(_))
    ));
}

#[tokio::test]
async fn delivery_records_are_replaced_removed_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
    let states = spool.state_store().unwrap();
    states.write("A", b"one".to_vec()).await.unwrap();
    states.write("A", b"two".to_vec()).await.unwrap();
    states.write("B", b"b".to_vec()).await.unwrap();
    assert_eq!(states.read_blocking("A"), Some(b"two".to_vec()));
    assert_eq!(names(&dir.path().join("state")), ["A", "B"]);
    states.remove("A").await;
    assert_eq!(states.read_blocking("A"), None);
    states.write("C", b"c".to_vec()).await.unwrap();
    states.retain_blocking(&["C"].into_iter().collect());
    assert_eq!(names(&dir.path().join("state")), ["C"]);
}
