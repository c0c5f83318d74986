//! The operator CLI, run as a real process against a real SQLite file.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn corvid(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_corvid"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the corvid binary runs");
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("corvid finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("corvid.toml");
    std::fs::write(
        &config,
        format!(
            "domains = ['localhost', 'example.org']\ndata_dir = '{}'\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    (dir, config)
}

#[test]
fn add_list_passwd_remove_round_trip() {
    let (_dir, config) = setup();
    let out = corvid(
        &config,
        &["user", "add", "Alice@LocalHost", "--password", "pw1"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "created alice@localhost",
        "JIDs are normalized"
    );

    // Password from stdin when no flag and no terminal.
    let out = corvid(&config, &["user", "add", "bob@example.org"], Some("pw2\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = corvid(&config, &["user", "list"], None);
    // Sorted by domain, then user.
    assert_eq!(text(&out.stdout), "bob@example.org\nalice@localhost\n");
    let out = corvid(&config, &["user", "list", "example.org"], None);
    assert_eq!(text(&out.stdout), "bob@example.org\n");

    let out = corvid(
        &config,
        &["user", "passwd", "bob@example.org", "--password", "new"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = corvid(&config, &["user", "remove", "bob@example.org"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = corvid(&config, &["user", "list"], None);
    assert_eq!(text(&out.stdout), "alice@localhost\n");
}

#[test]
fn clear_errors_for_bad_input() {
    let (_dir, config) = setup();
    assert!(
        corvid(
            &config,
            &["user", "add", "carol@localhost", "--password", "x"],
            None
        )
        .status
        .success()
    );
    let cases: [(&[&str], &str); 8] = [
        (
            &["user", "add", "carol@localhost", "--password", "x"],
            "already exists",
        ),
        (
            &["user", "add", "dave@elsewhere.net", "--password", "x"],
            "does not serve",
        ),
        (
            &["user", "add", "not a jid@@", "--password", "x"],
            "not a valid user JID",
        ),
        (
            &["user", "add", "localhost", "--password", "x"],
            "not a valid user JID",
        ),
        (&["user", "remove", "nobody@localhost"], "does not exist"),
        (
            &["user", "passwd", "nobody@localhost", "--password", "x"],
            "does not exist",
        ),
        (
            &["user", "clear-archive", "nobody@localhost"],
            "does not exist",
        ),
        (
            &[
                "user",
                "clear-archive",
                "carol@localhost",
                "--older-than-days",
                "-3",
            ],
            "unexpected argument",
        ),
    ];
    for (args, expected) in cases {
        let out = corvid(&config, args, None);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = text(&out.stderr);
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err:?}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // An account with nothing archived: nothing to remove, and that is not an error.
    let out = corvid(&config, &["user", "clear-archive", "carol@localhost"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("removed 0 archived messages of carol@localhost"));
    let out = corvid(&config, &["user", "add", "erin@localhost"], Some("\n"));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("must not be empty"));
}

#[test]
fn unknown_config_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[c2s]\nlisen = ['127.0.0.1:5222']\n").unwrap();
    let out = corvid(&config, &["user", "list"], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("lisen"),
        "the error names the unknown key: {err}"
    );
}

/// `corvid components list` and `corvid status` ask the running server, through its admin
/// socket; without a server they say so.
#[test]
fn live_commands_ask_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("corvid.toml");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (c2s, tls, component, s2s) = (free(), free(), free(), free());
    let (http, https) = (free(), free());
    std::fs::write(
        &config,
        format!(
            "data_dir = '{}'\ncomponent_listen = ['127.0.0.1:{component}']\n\
             [[components]]\ndomain = 'gw.localhost'\nsecret = 's'\n\
             [c2s]\nlisten = ['127.0.0.1:{c2s}']\ntls_listen = ['127.0.0.1:{tls}']\n\
             [s2s]\nlisten = ['127.0.0.1:{s2s}']\n\
             [http]\nlisten = ['127.0.0.1:{http}']\ntls_listen = ['127.0.0.1:{https}']\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = corvid(&config, &["components", "list"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no running server answers"),
        "{}",
        text(&out.stderr)
    );
    let mut server = Command::new(env!("CARGO_BIN_EXE_corvid"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("corvid serve runs");
    let socket = dir.path().join("data").join("admin.sock");
    for _ in 0..200 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let out = corvid(&config, &["components", "list"], None);
    let status = corvid(&config, &["status"], None);
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "gw.localhost\taway\n");
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert_eq!(text(&status.stdout), "sessions\t0\n");
}

/// `corvid token create` prints a token once and keeps only its hash; `list` shows names,
/// `revoke` removes one, and bad names or unknown tokens are errors.
#[test]
fn tokens_are_created_listed_and_revoked() {
    let (dir, config) = setup();
    let out = corvid(&config, &["token", "create", "--name", "ci"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert!(token.starts_with("corvid_") && token.len() == 71, "{token}");
    let kept = std::fs::read_to_string(dir.path().join("data").join("api-tokens")).unwrap();
    assert!(kept.starts_with("ci\t") && !kept.contains(&token), "{kept}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("data").join("api-tokens"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let out = corvid(&config, &["token", "create"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = corvid(&config, &["token", "create", "--name", "ci"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    let out = corvid(&config, &["token", "create", "--name", "a b"], None);
    assert!(!out.status.success());

    let out = corvid(&config, &["token", "list"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[0], "ci");
    assert!(names[1].starts_with("token-"));

    let out = corvid(&config, &["token", "revoke", "ci"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = corvid(&config, &["token", "list"], None);
    assert!(!text(&out.stdout).contains("ci\t"));
    let out = corvid(&config, &["token", "revoke", "ci"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no token"),
        "{}",
        text(&out.stderr)
    );
}
