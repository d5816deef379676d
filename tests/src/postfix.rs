//! Private Postfix instances and `smtp-sink` on loopback: the real peers Postern is
//! measured and tested against.
//!
//! - [`PostfixInstance::submission`]: Postfix doing the gateway's job (STARTTLS, SASL AUTH,
//!   accept with fsync before 250), the reference point of the benchmarks.
//! - [`PostfixInstance::receiver`]: a plain Postfix MX that stores mail for some domains in
//!   a Maildir, for delivery tests.
//! - [`SmtpSink`]: Postfix's `smtp-sink`, a fast receiver that throws mail away.
//! - [`require_postfix`]: fails with an install hint when Postfix or its SASL plugins are
//!   missing.
//! - [`write_self_signed_cert`]: a certificate both Postfix and the gateway load.
//!
//! Everything runs as root (Postfix's master must) and touches the system's mail setup in
//! one place only: Postfix refuses a configuration directory other than /etc/postfix unless
//! /etc/postfix/main.cf lists it in `alternate_config_directories`, so each instance adds its
//! directory there while it lives and removes it when dropped (creating a minimal main.cf
//! when the system Postfix was installed unconfigured). Instances whose test process died
//! without cleaning up are stopped and unlisted by the next instance that starts.
//!
//! Instance directories live under [`BASE_DIR`] (in /var so `maillog_file` is allowed there,
//! on disk so fsync costs what it costs), made by [`crate::peers::scratch_dir`]. Set `POSTERN_KEEP_PEERS=1` to keep them after a
//! test, with their maillog, for a post-mortem.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::peers::{BASE_DIR, INSTALL_HINT, keep_peers, require, scratch_dir};
use crate::process::{
    ChildGuard, SpawnGuarded, free_local_addr, retry_on_new_port, wait_for_port, wait_serving,
};

const SYSTEM_MAIN_CF: &str = "/etc/postfix/main.cf";
const LOCK_FILE: &str = "/etc/postfix/.postern-tests.lock";

/// Checks everything [`PostfixInstance`] and [`SmtpSink`] need, including the Cyrus SASL
/// plugins that Postfix would otherwise only miss at the first AUTH.
pub fn require_postfix() -> Result<()> {
    for cmd in ["postfix", "postconf", "smtp-sink", "saslpasswd2"] {
        require(cmd)?;
    }
    // Debian puts the plugins in /usr/lib/<multiarch triplet>/sasl2.
    let multiarch = std::fs::read_dir("/usr/lib")
        .map(|dir| dir.flatten().map(|e| e.path().join("sasl2")).collect())
        .unwrap_or_else(|_| Vec::new());
    let plugin_found = multiarch
        .into_iter()
        .chain([
            PathBuf::from("/usr/lib/sasl2"),
            PathBuf::from("/usr/lib64/sasl2"),
        ])
        .any(|d| d.join("libplain.so").exists());
    if !plugin_found {
        bail!("the Cyrus SASL PLAIN plugin (libsasl2-modules) is not installed: {INSTALL_HINT}");
    }
    if !is_root()? {
        bail!("private Postfix instances need root (Postfix's master refuses to run otherwise)");
    }
    Ok(())
}

fn is_root() -> Result<bool> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0"))
}

/// PEM files of a server certificate and its key.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// Writes a self-signed certificate (ECDSA P-256) for `names` into `dir` as cert.pem and
/// key.pem (PKCS#8), which both Postfix and the gateway load.
pub fn write_self_signed_cert(dir: &Path, names: &[&str]) -> Result<CertFiles> {
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let key = rcgen::generate_simple_self_signed(names).context("generating a certificate")?;
    let files = CertFiles {
        certificate: dir.join("cert.pem"),
        private_key: dir.join("key.pem"),
    };
    std::fs::write(&files.certificate, key.cert.pem())
        .with_context(|| format!("writing {}", files.certificate.display()))?;
    std::fs::write(&files.private_key, key.signing_key.serialize_pem())
        .with_context(|| format!("writing {}", files.private_key.display()))?;
    Ok(files)
}

/// What a submission instance does with mail it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Relay everything to this address (`relayhost = [ip]:port`), e.g. an [`SmtpSink`].
    Relay(SocketAddr),
    /// Leave every message in the `incoming` queue: no queue manager runs, so Postfix only
    /// accepts into its durable queue, exactly the work an accept-only gateway does.
    Hold,
}

/// Settings of [`PostfixInstance::submission`].
#[derive(Debug, Clone)]
pub struct SubmissionOptions {
    /// The port 587 style listener: STARTTLS required, AUTH only after it.
    pub listen: SocketAddr,
    /// An optional port 465 style listener (implicit TLS).
    pub implicit_tls_listen: Option<SocketAddr>,
    pub tls: CertFiles,
    /// SASL user name without the domain; the login is [`SubmissionOptions::login`].
    pub user: String,
    /// SASL realm; Postfix's Cyrus setup makes it part of the login.
    pub domain: String,
    pub password: String,
    pub delivery: Delivery,
    /// Concurrent sessions expected; the process limit is set above it so Postfix never
    /// makes clients wait for a free smtpd.
    pub max_sessions: usize,
    pub hostname: String,
}

impl SubmissionOptions {
    /// Defaults: login `bench@bench.test`, password `bench-password`, [`Delivery::Hold`],
    /// up to 200 sessions.
    pub fn new(listen: SocketAddr, tls: CertFiles) -> Self {
        Self {
            listen,
            implicit_tls_listen: None,
            tls,
            user: "bench".to_owned(),
            domain: "bench.test".to_owned(),
            password: "bench-password".to_owned(),
            delivery: Delivery::Hold,
            max_sessions: 200,
            hostname: "postfix.postern.test".to_owned(),
        }
    }

    /// What a client gives to AUTH: `user@domain`.
    pub fn login(&self) -> String {
        format!("{}@{}", self.user, self.domain)
    }
}

/// Settings of [`PostfixInstance::receiver`].
#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    /// Where it listens, e.g. 127.0.0.2:25 to stand in for a domain's MX.
    pub listen: SocketAddr,
    pub hostname: String,
    /// Domains it accepts mail for (any local part); everything else is refused with
    /// `554 Relay access denied`.
    pub domains: Vec<String>,
    /// Offer STARTTLS with this certificate (`smtpd_tls_security_level = may`).
    pub tls: Option<CertFiles>,
}

impl ReceiverOptions {
    pub fn new(listen: SocketAddr, domains: &[&str]) -> Self {
        Self {
            listen,
            hostname: "mx.postern.test".to_owned(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            tls: None,
        }
    }
}

/// One message a receiver stored (one copy per recipient).
#[derive(Debug, Clone)]
pub struct DeliveredMessage {
    /// The recipient it was delivered to, from the Delivered-To header.
    pub recipient: String,
    pub path: PathBuf,
    pub contents: String,
}

/// A private Postfix (master and its daemons) with its own config, queue and log under a
/// temporary directory. Dropping it stops Postfix and removes the directory.
pub struct PostfixInstance {
    root: Option<TempDir>,
    root_path: PathBuf,
    config_dir: PathBuf,
    listen: SocketAddr,
    postfix: PathBuf,
    running: bool,
}

impl PostfixInstance {
    /// Postfix configured as an SMTP submission server, the job Postern does: STARTTLS
    /// required, AUTH PLAIN/LOGIN against a Cyrus sasldb, relaying only for authenticated
    /// clients, every load limit off, and each accepted message fsynced before the 250.
    pub fn submission(opts: &SubmissionOptions) -> Result<Self> {
        require_postfix()?;
        let layout = Layout::create("postfix-sub-")?;
        // Debian's Postfix 3.7 reads smtpd.conf from $config_directory/sasl and ignores
        // cyrus_sasl_config_path (tried: AUTH then offers every mechanism and fails with
        // 454). The database stays out of the config directory, whose files
        // `postfix check` wants owned by root.
        let sasl_dir = layout.config_dir.join("sasl");
        std::fs::create_dir(&sasl_dir)?;
        std::fs::create_dir(layout.root.join("sasldb"))?;
        let sasldb = layout.root.join("sasldb/sasldb2");
        write_file(
            &sasl_dir.join("smtpd.conf"),
            &format!(
                "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n\
                 sasldb_path: {}\n",
                sasldb.display()
            ),
        )?;
        let mut saslpasswd = Command::new(require("saslpasswd2")?);
        saslpasswd
            .args(["-p", "-c", "-f"])
            .arg(&sasldb)
            .args(["-u", &opts.domain, &opts.user]);
        run_with_stdin(&mut saslpasswd, format!("{}\n", opts.password).as_bytes())?;
        let (uid, gid) = user_ids("postfix")?;
        std::os::unix::fs::chown(&sasldb, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", sasldb.display()))?;

        let mut main_cf = layout.common_main_cf(
            &opts.hostname,
            std::iter::once(opts.listen).chain(opts.implicit_tls_listen),
            opts.max_sessions,
        );
        let relayhost = match opts.delivery {
            Delivery::Relay(sink) => format!("[{}]:{}", sink.ip(), sink.port()),
            Delivery::Hold => String::new(),
        };
        write!(
            main_cf,
            "relayhost = {relayhost}\n\
             smtpd_tls_cert_file = {}\n\
             smtpd_tls_key_file = {}\n\
             smtpd_sasl_type = cyrus\n\
             smtpd_sasl_path = smtpd\n",
            opts.tls.certificate.display(),
            opts.tls.private_key.display(),
        )?;

        let mut master_cf = format!(
            "{} inet n - n - - smtpd\n\
             \x20 -o smtpd_tls_security_level=encrypt\n\
             \x20 -o smtpd_sasl_auth_enable=yes\n\
             \x20 -o smtpd_tls_auth_only=yes\n\
             \x20 -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n",
            master_addr(opts.listen)
        );
        if let Some(addr) = opts.implicit_tls_listen {
            write!(
                master_cf,
                "{} inet n - n - - smtpd\n\
                 \x20 -o smtpd_tls_wrappermode=yes\n\
                 \x20 -o smtpd_tls_security_level=encrypt\n\
                 \x20 -o smtpd_sasl_auth_enable=yes\n\
                 \x20 -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n",
                master_addr(addr)
            )?;
        }
        let hold = opts.delivery == Delivery::Hold;
        master_cf.push_str(&support_services(!hold, false));
        layout.start(&main_cf, &master_cf, opts.listen, hold)
    }

    /// Postfix as a plain receiving MX: accepts mail for `opts.domains` from anyone,
    /// delivers it into one Maildir, refuses relaying elsewhere.
    ///
    /// One Maildir for all recipients because the virtual delivery agent forbids
    /// per-recipient paths computed by a regexp; its Delivered-To header tells them apart.
    pub fn receiver(opts: &ReceiverOptions) -> Result<Self> {
        require_postfix()?;
        if opts.domains.is_empty() {
            bail!("a receiver needs at least one domain");
        }
        let layout = Layout::create("postfix-mx-")?;
        let mail_dir = layout.root.join("mail");
        std::fs::create_dir(&mail_dir)?;
        // The virtual delivery agent writes as this uid; nobody is on every Debian.
        let (uid, gid) = user_ids("nobody")?;
        std::os::unix::fs::chown(&mail_dir, Some(uid), Some(gid))?;

        let mut main_cf = layout.common_main_cf(&opts.hostname, [opts.listen], 100);
        write!(
            main_cf,
            "relayhost =\n\
             virtual_mailbox_domains = {}\n\
             virtual_mailbox_base = {}\n\
             virtual_mailbox_maps = static:inbox/\n\
             virtual_uid_maps = static:{uid}\n\
             virtual_gid_maps = static:{gid}\n\
             smtpd_relay_restrictions = reject_unauth_destination\n\
             default_transport = error:5.7.1 this test receiver sends no mail\n\
             relay_transport = error:5.7.1 this test receiver sends no mail\n",
            opts.domains.join(", "),
            mail_dir.display(),
        )?;
        if let Some(tls) = &opts.tls {
            write!(
                main_cf,
                "smtpd_tls_security_level = may\n\
                 smtpd_tls_cert_file = {}\n\
                 smtpd_tls_key_file = {}\n\
                 smtpd_tls_received_header = yes\n\
                 smtpd_tls_loglevel = 1\n",
                tls.certificate.display(),
                tls.private_key.display(),
            )?;
        }
        let mut master_cf = format!("{} inet n - n - - smtpd\n", master_addr(opts.listen));
        master_cf.push_str(&support_services(true, true));
        layout.start(&main_cf, &master_cf, opts.listen, false)
    }

    /// The (first) SMTP listener.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The directory holding main.cf and master.cf, for `postfix -c` or `postconf -c`.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The instance's whole log so far.
    pub fn maillog(&self) -> Result<String> {
        read_maillog(&self.root_path)
    }

    /// Polls the log until a line contains `needle`; returns that line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.maillog()?;
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            if Instant::now() >= deadline {
                bail!("no log line with {needle:?} after {timeout:?}; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Queue ids of the messages still queued (incoming, active, deferred, hold); with
    /// [`Delivery::Hold`], every message accepted so far.
    pub fn queued_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for queue in ["incoming", "active", "deferred", "hold"] {
            collect_files(&self.root_path.join("queue").join(queue), &mut ids)?;
        }
        Ok(ids
            .into_iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    /// Messages a receiver has delivered so far.
    pub fn delivered(&self) -> Result<Vec<DeliveredMessage>> {
        let mail_dir = self.root_path.join("mail");
        let mut files = Vec::new();
        collect_files(&mail_dir, &mut files)?;
        let mut messages = Vec::new();
        for path in files {
            // tmp/ holds deliveries in progress.
            if path.parent().and_then(Path::file_name) != Some("new".as_ref()) {
                continue;
            }
            let contents = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let recipient = contents
                .lines()
                .take_while(|l| !l.is_empty())
                .find_map(|l| l.strip_prefix("Delivered-To: "))
                .unwrap_or_default()
                .to_owned();
            messages.push(DeliveredMessage {
                recipient,
                path,
                contents,
            });
        }
        Ok(messages)
    }

    /// Polls until at least `count` messages were delivered.
    pub fn wait_for_delivered(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<DeliveredMessage>> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.delivered()?;
            if messages.len() >= count {
                return Ok(messages);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} of {count} messages delivered after {timeout:?}; log:\n{}",
                    messages.len(),
                    self.maillog().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The master process id, e.g. to kill Postfix abruptly in a crash test.
    pub fn master_pid(&self) -> Result<u32> {
        let path = self.root_path.join("queue/pid/master.pid");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{} holds {text:?}", path.display()))
    }

    /// `postfix check` output. The postfix command writes its fatal errors to stderr only
    /// when that is a terminal (otherwise to a log that may not exist yet), so it runs
    /// under script(1).
    fn check_on_tty(&self) -> String {
        let Ok(script) = require("script") else {
            return "(script(1) is not installed to show it)".to_owned();
        };
        let check = format!(
            "{} -c {} check",
            self.postfix.display(),
            self.config_dir.display()
        );
        match Command::new(script)
            .args(["-qec", &check, "/dev/null"])
            .output()
        {
            Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            Err(e) => format!("(cannot run script(1): {e})"),
        }
    }

    /// Stops Postfix (`postfix -c DIR stop`, which waits for master to exit) and unlists
    /// the directory. Dropping the instance does this too, ignoring errors.
    pub fn stop(&mut self) -> Result<()> {
        if self.running {
            self.running = false;
            let result = run(Command::new(&self.postfix)
                .arg("-c")
                .arg(&self.config_dir)
                .arg("stop"));
            unregister(&self.config_dir)?;
            result?;
        }
        Ok(())
    }
}

impl Drop for PostfixInstance {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("stopping Postfix in {}: {e:#}", self.root_path.display());
        }
        if let Some(root) = self.root.take()
            && keep_peers()
        {
            eprintln!("keeping Postfix directory {}", root.keep().display());
        }
    }
}

/// The directory tree of one instance being set up.
struct Layout {
    dir: TempDir,
    root: PathBuf,
    config_dir: PathBuf,
}

impl Layout {
    fn create(prefix: &str) -> Result<Self> {
        let mut dir = scratch_dir(prefix)?;
        // Until start succeeds, a failure should leave nothing behind; keeping is decided
        // when the instance is dropped.
        dir.disable_cleanup(false);
        let root = dir.path().to_owned();
        // Postfix daemons run as the postfix user and must traverse into their queue.
        set_mode(&root, 0o755)?;
        let config_dir = root.join("etc");
        for sub in ["etc", "queue", "data", "log"] {
            std::fs::create_dir(root.join(sub))?;
        }
        let (uid, gid) = user_ids("postfix")?;
        for sub in ["data", "log"] {
            std::os::unix::fs::chown(root.join(sub), Some(uid), Some(gid))?;
        }
        // Lets a later instance recognise this one as stale if our process dies.
        write_file(&root.join("owner.pid"), &std::process::id().to_string())?;
        Ok(Self {
            dir,
            root,
            config_dir,
        })
    }

    fn common_main_cf(
        &self,
        hostname: &str,
        listeners: impl IntoIterator<Item = SocketAddr>,
        max_sessions: usize,
    ) -> String {
        let listeners = listeners.into_iter().collect::<Vec<_>>();
        // Postfix refuses interface addresses it cannot find on an interface, and 127.0.0.2
        // is not one (only routed to lo); master.cf binds the exact addresses anyway.
        let interfaces = if listeners.iter().all(|a| a.ip().is_loopback()) {
            "loopback-only".to_owned()
        } else {
            let mut ips = listeners
                .iter()
                .map(|a| match a.ip() {
                    IpAddr::V4(ip) => ip.to_string(),
                    IpAddr::V6(ip) => format!("[{ip}]"),
                })
                .collect::<Vec<_>>();
            ips.dedup();
            ips.join(", ")
        };
        let protocols = if listeners.iter().any(|a| a.is_ipv6()) {
            "all"
        } else {
            "ipv4"
        };
        let domain = hostname.split_once('.').map_or(hostname, |(_, d)| d);
        let root = self.root.display();
        format!(
            "# Written by postern-tests (tests/src/postfix.rs).\n\
             compatibility_level = 3.6\n\
             queue_directory = {root}/queue\n\
             data_directory = {root}/data\n\
             maillog_file = {root}/log/maillog\n\
             myhostname = {hostname}\n\
             mydomain = {domain}\n\
             myorigin = $myhostname\n\
             mydestination =\n\
             local_recipient_maps =\n\
             alias_maps =\n\
             alias_database =\n\
             mynetworks = 127.0.0.0/8\n\
             inet_interfaces = {interfaces}\n\
             inet_protocols = {protocols}\n\
             biff = no\n\
             smtp_host_lookup = native\n\
             smtpd_peername_lookup = no\n\
             smtpd_client_connection_count_limit = 0\n\
             smtpd_client_connection_rate_limit = 0\n\
             smtpd_client_message_rate_limit = 0\n\
             smtpd_client_recipient_rate_limit = 0\n\
             in_flow_delay = 0\n\
             # Postmaster notices (of a failed AUTH, say) would join the queue under test.\n\
             notify_classes =\n\
             default_process_limit = {limit}\n",
            limit = max_sessions + 50,
        )
    }

    /// Writes the configuration and starts Postfix; `without_qmgr` when master.cf has no
    /// queue manager.
    fn start(
        self,
        main_cf: &str,
        master_cf: &str,
        listen: SocketAddr,
        without_qmgr: bool,
    ) -> Result<PostfixInstance> {
        write_file(&self.config_dir.join("main.cf"), main_cf)?;
        write_file(&self.config_dir.join("master.cf"), master_cf)?;
        let postfix = require("postfix")?;
        register(&self.config_dir)?;
        let instance = PostfixInstance {
            root_path: self.root,
            root: Some(self.dir),
            config_dir: self.config_dir,
            listen,
            postfix,
            running: true,
        };
        let started = run(Command::new(&instance.postfix)
            .arg("-c")
            .arg(&instance.config_dir)
            .arg("start"))
        .and_then(|_| {
            if without_qmgr {
                // cleanup wakes the queue manager after each message and logs a warning
                // when public/qmgr is missing; a socket nobody listens on fails quietly,
                // sparing Postfix a log line per message that it would not write in
                // production.
                let path = instance.root_path.join("queue/public/qmgr");
                drop(std::os::unix::net::UnixListener::bind(&path)?);
                let (uid, gid) = user_ids("postfix")?;
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
            }
            wait_for_port(listen, Duration::from_secs(20))
        });
        if let Err(e) = started {
            return Err(e.context(format!(
                "starting Postfix in {}; postfix check says: {}; its log:\n{}",
                instance.root_path.display(),
                instance.check_on_tty(),
                instance.maillog().unwrap_or_default(),
            )));
        }
        Ok(instance)
    }
}

/// master.cf lines of the internal services, chroot off so they reach the temp dirs.
/// Without `qmgr` nothing leaves the incoming queue.
fn support_services(qmgr: bool, virtual_delivery: bool) -> String {
    let mut s = String::from(
        "cleanup   unix n - n - 0 cleanup\n\
         tlsmgr    unix - - n 1000? 1 tlsmgr\n\
         rewrite   unix - - n - - trivial-rewrite\n\
         bounce    unix - - n - 0 bounce\n\
         defer     unix - - n - 0 bounce\n\
         trace     unix - - n - 0 bounce\n\
         verify    unix - - n - 1 verify\n\
         flush     unix n - n 1000? 0 flush\n\
         proxymap  unix - - n - - proxymap\n\
         proxywrite unix - - n - 1 proxymap\n\
         smtp      unix - - n - - smtp\n\
         relay     unix - - n - - smtp\n\
         showq     unix n - n - - showq\n\
         error     unix - - n - - error\n\
         retry     unix - - n - - error\n\
         discard   unix - - n - - discard\n\
         anvil     unix - - n - 1 anvil\n\
         scache    unix - - n - 1 scache\n\
         postlog   unix-dgram n - n - 1 postlogd\n",
    );
    if qmgr {
        s.push_str("qmgr      unix n - n 300 1 qmgr\n");
    }
    if virtual_delivery {
        s.push_str("virtual   unix - n n - - virtual\n");
    }
    s
}

fn master_addr(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
    }
}

fn read_maillog(root: &Path) -> Result<String> {
    let path = root.join("log/maillog");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            collect_files(&entry.path(), out)?;
        } else {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// Serialises edits of the system main.cf between threads and test processes.
struct MainCfLock;

impl MainCfLock {
    fn acquire() -> Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(LOCK_FILE)
            {
                Ok(mut f) => {
                    // Best effort: the pid only helps a human looking at a stuck lock.
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(Self);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // A process killed while holding the lock must not block every later run.
                    let stale = std::fs::metadata(LOCK_FILE)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(20));
                    if stale {
                        let _ = std::fs::remove_file(LOCK_FILE);
                    } else if Instant::now() >= deadline {
                        bail!("{LOCK_FILE} stays locked; remove it if no test runs");
                    } else {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("creating {LOCK_FILE}")),
            }
        }
    }
}

impl Drop for MainCfLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(LOCK_FILE);
    }
}

/// Lists `config_dir` in the system main.cf's `alternate_config_directories`, and unlists
/// (after stopping them) instances whose test process is gone.
fn register(config_dir: &Path) -> Result<()> {
    let _lock = MainCfLock::acquire()?;
    ensure_system_main_cf()?;
    let mut dirs = alternate_config_directories()?;
    let before = dirs.clone();
    dirs.retain(|d| !reap_if_stale(Path::new(d)));
    let dir = config_dir.to_string_lossy().into_owned();
    if !dirs.contains(&dir) {
        dirs.push(dir);
    }
    if dirs != before {
        set_alternate_config_directories(&dirs)?;
    }
    Ok(())
}

fn unregister(config_dir: &Path) -> Result<()> {
    let _lock = MainCfLock::acquire()?;
    let mut dirs = alternate_config_directories()?;
    let dir = config_dir.to_string_lossy();
    let before = dirs.len();
    dirs.retain(|d| *d != dir);
    if dirs.len() != before {
        set_alternate_config_directories(&dirs)?;
    }
    Ok(())
}

/// Whether `config_dir` belongs to an instance of ours whose process died; such an
/// instance is stopped and its directory removed.
fn reap_if_stale(config_dir: &Path) -> bool {
    if !config_dir.starts_with(BASE_DIR) {
        return false;
    }
    let Some(root) = config_dir.parent() else {
        return false;
    };
    if !root.exists() {
        return true;
    }
    let owner = std::fs::read_to_string(root.join("owner.pid")).unwrap_or_default();
    let owner_alive = owner
        .trim()
        .parse::<u32>()
        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
    if owner_alive {
        return false;
    }
    if let Ok(postfix) = require("postfix") {
        let _ = Command::new(postfix)
            .arg("-c")
            .arg(config_dir)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(root);
    true
}

/// Debian's "No configuration" install leaves no main.cf, and Postfix then refuses every
/// alternate directory; a minimal one (nothing but defaults) is enough.
fn ensure_system_main_cf() -> Result<()> {
    if Path::new(SYSTEM_MAIN_CF).exists() {
        return Ok(());
    }
    write_file(
        Path::new(SYSTEM_MAIN_CF),
        "# Written by postern-tests (tests/src/postfix.rs) because the system Postfix is not\n\
         # configured: it only authorises the test suite's private instances, and the\n\
         # system Postfix is not meant to run.\n\
         compatibility_level = 3.6\n\
         alternate_config_directories =\n",
    )
}

fn alternate_config_directories() -> Result<Vec<String>> {
    let out = run(Command::new(require("postconf")?).args([
        "-c",
        "/etc/postfix",
        "-h",
        "alternate_config_directories",
    ]))?;
    Ok(out
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

fn set_alternate_config_directories(dirs: &[String]) -> Result<()> {
    run(Command::new(require("postconf")?)
        .args(["-c", "/etc/postfix", "-e"])
        .arg(format!(
            "alternate_config_directories = {}",
            dirs.join(", ")
        )))?;
    Ok(())
}

/// Postfix's `smtp-sink`: accepts every message and discards it, counting them.
/// Killed when dropped.
pub struct SmtpSink {
    /// Killed when the sink is dropped.
    _child: ChildGuard,
    addr: SocketAddr,
    messages: Arc<AtomicU64>,
}

impl SmtpSink {
    /// Starts `smtp-sink -c [extra_args] ADDR 256` and waits until it listens.
    /// `extra_args` are smtp-sink options, e.g. `["-d", "dir/%M."]` to keep messages or
    /// `["-Q", "mail:450"]` to defer.
    pub fn start(addr: SocketAddr, extra_args: &[&str]) -> Result<Self> {
        let mut cmd = Command::new(require("smtp-sink")?);
        cmd.arg("-c");
        if is_root()? {
            // smtp-sink refuses to keep root privileges.
            cmd.args(["-u", "postfix"]);
        }
        cmd.args(extra_args)
            .arg(master_addr(addr))
            .arg("256")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn_guarded().context("starting smtp-sink")?;
        let messages = Arc::new(AtomicU64::new(0));
        let mut stdout = child.stdout.take().context("smtp-sink stdout")?;
        let counter = Arc::clone(&messages);
        // With -c smtp-sink rewrites "sess=N quit=N mesg=N\r" on every event.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut pending = Vec::new();
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|&b| b == b'\r' || b == b'\n') {
                    let line = String::from_utf8_lossy(&pending[..end]).into_owned();
                    pending.drain(..=end);
                    if let Some(count) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("mesg="))
                        .and_then(|n| n.parse().ok())
                    {
                        counter.store(count, Ordering::Relaxed);
                    }
                }
            }
        });
        wait_serving(
            "smtp-sink",
            &mut child,
            addr,
            &[],
            Duration::from_secs(10),
            Duration::from_millis(20),
            || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
        )?;
        Ok(Self {
            _child: child,
            addr,
            messages,
        })
    }

    /// [`SmtpSink::start`] on a free port of 127.0.0.1 (another one if that is taken
    /// before smtp-sink binds it).
    pub fn start_local(extra_args: &[&str]) -> Result<Self> {
        retry_on_new_port("smtp-sink", free_local_addr, |addr| {
            Self::start(addr, extra_args)
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Messages received so far (completed DATA).
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Polls until at least `count` messages arrived.
    pub fn wait_for_messages(&self, count: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.messages() < count {
            if Instant::now() >= deadline {
                bail!(
                    "smtp-sink got {} of {count} messages after {timeout:?}",
                    self.messages()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// uid and gid of a system user, from /etc/passwd.
fn user_ids(name: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| anyhow!("no user {name:?} in /etc/passwd: {INSTALL_HINT}"))
}

/// Runs a command to completion; its stdout, or an error quoting its output.
fn run(cmd: &mut Command) -> Result<String> {
    run_with_stdin(cmd, &[])
}

fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Result<String> {
    let out = crate::peers::output(cmd, input)?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::queued_id;
    use crate::process::free_port;

    /// Runs swaks with whitespace-separated `args` and returns whether it succeeded and
    /// its transcript.
    fn swaks(args: &str) -> (bool, String) {
        let mut cmd = Command::new(require("swaks").unwrap());
        cmd.args(args.split_whitespace()).args(["--timeout", "20"]);
        crate::peers::transcript(&mut cmd, b"")
    }

    fn cert() -> (TempDir, CertFiles) {
        let dir = tempfile::tempdir().unwrap();
        let files = write_self_signed_cert(dir.path(), &["localhost"]).unwrap();
        (dir, files)
    }

    #[test]
    fn submission_relays_authenticated_mail_to_the_sink() {
        let (_cert_dir, tls) = cert();
        let sink = SmtpSink::start_local(&[]).unwrap();
        let mut opts = SubmissionOptions::new(free_local_addr().unwrap(), tls);
        opts.delivery = Delivery::Relay(sink.addr());
        let postfix = PostfixInstance::submission(&opts).unwrap();
        let server = postfix.listen_addr();
        let (login, password) = (opts.login(), &opts.password);

        let (ok, out) = swaks(&format!(
            "--server {server} --tls --auth PLAIN --auth-user {login} --auth-password {password} \
             --from sender@bench.test --to someone@example.net --body hello-from-swaks"
        ));
        assert!(ok, "{out}");
        assert!(out.contains("<~  250 2.0.0 Ok: queued as"), "{out}");
        sink.wait_for_messages(1, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e:#}\n{}", postfix.maillog().unwrap()));
        let id = queued_id(&out);
        postfix
            .wait_for_log(&format!("{id}: removed"), Duration::from_secs(10))
            .unwrap();

        // The same server refuses a wrong password and AUTH before TLS.
        let (ok, out) = swaks(&format!(
            "--server {server} --tls --auth LOGIN --auth-user {login} --auth-password wrong \
             --from sender@bench.test --to x@example.net"
        ));
        assert!(!ok && out.contains("535"), "{out}");
        let (ok, out) = swaks(&format!(
            "--server {server} --auth PLAIN --auth-user {login} --auth-password {password} \
             --from sender@bench.test --to x@example.net"
        ));
        assert!(!ok, "{out}");
        assert_eq!(sink.messages(), 1);
    }

    #[test]
    fn submission_in_hold_mode_keeps_mail_in_its_queue() {
        let (_cert_dir, tls) = cert();
        let mut opts = SubmissionOptions::new(free_local_addr().unwrap(), tls);
        opts.implicit_tls_listen = Some(free_local_addr().unwrap());
        let postfix = PostfixInstance::submission(&opts).unwrap();
        let (login, password) = (opts.login(), &opts.password);
        let mut ids = Vec::new();
        for (server, tls_flag) in [
            (postfix.listen_addr(), "--tls"),
            (opts.implicit_tls_listen.unwrap(), "--tlsc"),
        ] {
            let (ok, out) = swaks(&format!(
                "--server {server} {tls_flag} --auth PLAIN --auth-user {login} \
                 --auth-password {password} --from a@bench.test --to b@example.net"
            ));
            assert!(ok, "{out}");
            ids.push(queued_id(&out));
        }
        let mut queued = postfix.queued_ids().unwrap();
        queued.sort();
        ids.sort();
        assert_eq!(queued, ids);
        assert!(postfix.master_pid().unwrap() > 1);
        // No queue manager must not mean a warning per message (see Layout::start).
        let log = postfix.maillog().unwrap();
        assert!(!log.contains("warning:"), "{log}");
    }

    #[test]
    fn receiver_stores_mail_for_its_domains_only() {
        let (_cert_dir, tls) = cert();
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let listen = SocketAddr::new(ip, free_port(ip).unwrap());
        let mut opts = ReceiverOptions::new(listen, &["example.org", "example.com"]);
        opts.tls = Some(tls);
        let mx = PostfixInstance::receiver(&opts).unwrap();
        let server = listen;

        let (ok, out) = swaks(&format!(
            "--server {server} --tls --from sender@elsewhere.test --to alice@example.org \
             --header-Subject delivery-test --body body-marker-42"
        ));
        assert!(ok, "{out}");
        let messages = mx
            .wait_for_delivered(1, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].recipient, "alice@example.org");
        assert!(messages[0].contents.contains("body-marker-42"));
        assert!(messages[0].contents.contains("Subject: delivery-test"));
        assert!(mx.maillog().unwrap().contains("TLS connection established"));

        let (ok, out) = swaks(&format!(
            "--server {server} --from sender@elsewhere.test --to bob@example.net"
        ));
        assert!(!ok && out.contains("554 5.7.1"), "{out}");
    }

    #[test]
    fn instances_unlist_their_directory_when_dropped() {
        let (_cert_dir, tls) = cert();
        let opts = SubmissionOptions::new(free_local_addr().unwrap(), tls);
        let postfix = PostfixInstance::submission(&opts).unwrap();
        let dir = postfix.config_dir().to_string_lossy().into_owned();
        assert!(alternate_config_directories().unwrap().contains(&dir));
        drop(postfix);
        assert!(!alternate_config_directories().unwrap().contains(&dir));
        assert!(!Path::new(&dir).exists());
    }
}
