//! Real git servers for the tests, as a forge would be reached:
//!
//! - [`HttpsHost`]: nginx with TLS (a throwaway CA made here) and HTTP basic
//!   auth, passing git's smart HTTP to `git-http-backend` through fcgiwrap.
//!   It knows a read-write token (user `x-access-token`) and a read-only one
//!   (user `reader`, refused with 403 on push, as GitHub refuses a token
//!   without write access).
//! - [`SshHost`]: OpenSSH's sshd with its own host key, letting in one
//!   deploy key.
//!
//! Both listen on 127.0.0.1 on a free port, keep their configuration, keys
//! and logs in a temporary directory, touch no system service, and are
//! killed (with everything they started) when dropped. A missing program
//! fails the test: `scripts/lib/setup-host --tests` installs them.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_until};

/// Fail, naming the package, when a server program is not installed.
pub fn require(path: &str, package: &str) {
    let found = if path.contains('/') {
        Path::new(path).exists()
    } else {
        Command::new("sh")
            .args(["-c", &format!("command -v {path}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        found,
        "{path} is required (Debian package {package}): run scripts/lib/setup-host --tests"
    );
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("the program starts");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A process group started by a server, killed whole on drop.
struct Group(Option<Child>);

impl Group {
    fn spawn(cmd: &mut Command) -> Group {
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?} starts: {e}"));
        Group(Some(child))
    }

    fn alive(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// A random secret for a test server: 32 hex digits.
pub fn random_token(prefix: &str) -> String {
    format!(
        "{prefix}_{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

/// The user name a read-only token is sent with.
pub const READER: &str = "reader";

pub struct HttpsHost {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The CA that signed the server's certificate: a worker trusts it
    /// through `[git] ca_file`.
    pub ca: PathBuf,
    /// The read-write token, for the user `x-access-token`.
    pub token: String,
    /// A token that may read but not push, for the user [`READER`].
    pub read_token: String,
    // Dropped in this order: nginx first, then what it talks to.
    nginx: Group,
    _fcgi: Group,
}

impl HttpsHost {
    /// Serve every bare repository under `root` (`root/grid.git` is
    /// `https://127.0.0.1:PORT/grid.git`).
    pub fn start(root: &Path) -> HttpsHost {
        require("nginx", "nginx-light");
        require("fcgiwrap", "fcgiwrap");
        require("openssl", "openssl");
        require("/usr/lib/git-core/git-http-backend", "git");
        let dir = tempfile::Builder::new()
            .prefix("dgrid-https-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        make_tls(d);
        let token = random_token("ghp");
        let read_token = random_token("ghr");
        let host = HttpsHostFiles { dir: d };
        host.set_users(&[("x-access-token", &token), (READER, &read_token)]);
        let port = free_port();
        std::fs::write(d.join("nginx.conf"), nginx_conf(d, root, port)).unwrap();
        for sub in ["tmp", "logs"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let sock = d.join("fcgi.sock");
        // 16 children: a bench drains with up to 16 workers at once, and a
        // forge does not make them queue for a backend.
        let fcgi = Group::spawn(
            Command::new("fcgiwrap")
                .args(["-c", "16", "-s"])
                .arg(format!("unix:{}", sock.display()))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("logs/fcgiwrap.log")).unwrap()),
        );
        wait_until("fcgiwrap's socket", Duration::from_secs(30), || {
            sock.exists()
        });
        let mut nginx = Group::spawn(
            Command::new("nginx")
                .arg("-p")
                .arg(d)
                .arg("-c")
                .arg(d.join("nginx.conf"))
                .arg("-e")
                .arg(d.join("logs/error.log"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("logs/nginx.stderr")).unwrap()),
        );
        wait_until("nginx to listen", Duration::from_secs(30), || {
            assert!(
                nginx.alive(),
                "nginx exited: {}",
                std::fs::read_to_string(d.join("logs/nginx.stderr")).unwrap_or_default()
            );
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        HttpsHost {
            ca: d.join("ca.pem"),
            dir,
            port,
            token,
            read_token,
            nginx,
            _fcgi: fcgi,
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("https://127.0.0.1:{}/{repo}", self.port)
    }

    /// Replace the accounts the server knows (nginx reads the file on each
    /// request): revoking a token is writing the file without it.
    pub fn set_users(&self, users: &[(&str, &str)]) {
        HttpsHostFiles {
            dir: self.dir.path(),
        }
        .set_users(users);
    }

    /// Every request line the server logged (method, URL, status, user).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/access.log")).unwrap_or_default()
    }

    /// Everything the server wrote: access and error logs, fcgiwrap's and
    /// git-http-backend's stderr.
    pub fn all_logs(&self) -> String {
        let mut all = String::new();
        for f in std::fs::read_dir(self.dir.path().join("logs")).unwrap() {
            all.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap_or_default());
        }
        all
    }
}

struct HttpsHostFiles<'a> {
    dir: &'a Path,
}

impl HttpsHostFiles<'_> {
    fn set_users(&self, users: &[(&str, &str)]) {
        // nginx's {PLAIN} scheme: a test server, its file in a private
        // temporary directory. Written whole, then renamed into place.
        let text: String = users
            .iter()
            .map(|(u, t)| format!("{u}:{{PLAIN}}{t}\n"))
            .collect();
        let tmp = self.dir.join("users.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.join("users")).unwrap();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with the
/// openssl CLI: `ca.pem`, `server.pem`, `server.key` in `d`.
fn make_tls(d: &Path) {
    let ossl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(d));
    ossl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=dgrid test CA",
    ]);
    ossl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

fn nginx_conf(d: &Path, root: &Path, port: u16) -> String {
    let d = d.display();
    let root = root.display();
    // A push is the receive-pack service: its ref advertisement
    // (info/refs?service=git-receive-pack) and its POST. The read-only user
    // gets 403 there, after authenticating; `if` runs before auth_basic,
    // but $remote_user is empty until git has been asked for credentials.
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {d}/logs/access.log;
  client_body_temp_path {d}/tmp/body;
  fastcgi_temp_path {d}/tmp/fastcgi;
  proxy_temp_path {d}/tmp/proxy;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  client_max_body_size 0;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {d}/server.pem;
    ssl_certificate_key {d}/server.key;
    location / {{
      auth_basic "grid";
      auth_basic_user_file {d}/users;
      set $push 0;
      if ($uri ~ /git-receive-pack$) {{ set $push 1; }}
      if ($arg_service = git-receive-pack) {{ set $push 1; }}
      set $deny "$push:$remote_user";
      if ($deny = "1:{READER}") {{ return 403; }}
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT {root};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $uri;
      fastcgi_param REMOTE_USER $remote_user;
      fastcgi_pass unix:{d}/fcgi.sock;
    }}
  }}
}}
"#
    )
}

pub struct SshHost {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The deploy key sshd lets in (private; mode 0600).
    pub key: PathBuf,
    /// A known_hosts file that pins this server's host key.
    pub known_hosts: PathBuf,
    /// The server's public host key line (`ssh-ed25519 AAAA...`).
    pub host_key: String,
    user: String,
    // Dropping it kills sshd and its sessions.
    sshd: Group,
}

impl SshHost {
    pub fn start() -> SshHost {
        require("/usr/sbin/sshd", "openssh-server");
        require("ssh-keygen", "openssh-client");
        let dir = tempfile::Builder::new()
            .prefix("dgrid-ssh-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let keygen = |file: &str, comment: &str| {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(d.join(file)))
        };
        keygen("host_key", "test host");
        keygen("deploy_key", "deploy key");
        std::fs::copy(d.join("deploy_key.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .expect("the test's user has a name")
            .name;
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPidFile none\nUsePAM no\n\
                 StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel VERBOSE\n",
                d = d.display()
            ),
        )
        .unwrap();
        let host_key = std::fs::read_to_string(d.join("host_key.pub"))
            .unwrap()
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let known_hosts = d.join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_key}\n")).unwrap();
        // sshd insists on its privilege separation directory, which the
        // package leaves to its service unit to make.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mut sshd = Group::spawn(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-f"])
                .arg(d.join("sshd_config"))
                .arg("-E")
                .arg(d.join("sshd.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_until("sshd to listen", Duration::from_secs(30), || {
            assert!(
                sshd.alive(),
                "sshd exited: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        SshHost {
            key: d.join("deploy_key"),
            known_hosts,
            host_key,
            port,
            user,
            sshd,
            dir,
        }
    }

    /// The URL of a bare repository on this machine, reached over SSH.
    pub fn url(&self, repo: &Path) -> String {
        self.url_at(self.port, repo)
    }

    /// The same repository reached at another port of this machine (a
    /// proxy in front of the server).
    pub fn url_at(&self, port: u16, repo: &Path) -> String {
        format!("ssh://{}@127.0.0.1:{port}{}", self.user, repo.display())
    }

    /// A known_hosts file that pins this server's host key at `port`.
    pub fn known_hosts_at(&self, port: u16) -> PathBuf {
        let path = self.dir.path().join(format!("known_hosts-{port}"));
        std::fs::write(&path, format!("[127.0.0.1]:{port} {}\n", self.host_key)).unwrap();
        path
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// A known_hosts file with a key this server does not have, for the
    /// same address: what a man in the middle (or a re-keyed server) looks
    /// like to the client.
    pub fn wrong_known_hosts(&self) -> PathBuf {
        let d = self.dir.path();
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "impostor", "-f"])
            .arg(d.join("other_key")));
        let other = std::fs::read_to_string(d.join("other_key.pub")).unwrap();
        let line: Vec<&str> = other.split_whitespace().take(2).collect();
        let path = d.join("wrong_known_hosts");
        std::fs::write(
            &path,
            format!("[127.0.0.1]:{} {}\n", self.port, line.join(" ")),
        )
        .unwrap();
        path
    }
}
