//! Kubeconfigs as operators have them, on the test environment's real API servers: several
//! files, credential plugins that are slow, hang or hand out short-lived tokens (real plugin
//! processes printing a real ServiceAccount token), context names that collide, and the other
//! shapes kubectl accepts. One context must cost its own cluster, never the others, the first
//! frame, a key or `--once`'s bound; and nothing but the dashboard may write to the terminal.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use serde_yaml::Value as Yaml;

use common::live::{all_live, cluster, Live};
use common::plugin::*;
use common::testenv::{testenv, TestEnv};
use common::tmux::Tmux;

/// Starts the live source and engine on the files of `KUBECONFIG` (in this process).
async fn live_on(files: &[&Path]) -> Result<Live> {
    // Live::start reads one file; the merge of several is what resolve() does with KUBECONFIG,
    // so the files are handed over the way the binary gets them.
    let (targets, problems) = meshtop::sources::kube::kubeconfig::resolve_files(
        &files.iter().map(|p| p.to_path_buf()).collect::<Vec<_>>(),
        &[],
        &Default::default(),
    )?;
    if !problems.is_empty() {
        bail!("kubeconfig problems: {problems:?}");
    }
    Ok(Live::from_targets(targets))
}

fn others(env: &TestEnv, context: &str) -> Vec<String> {
    env.contexts
        .iter()
        .filter(|c| *c != context)
        .cloned()
        .collect()
}

/// A plugin that takes 5 s costs its own cluster only: the others are live long before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_credential_plugin_costs_only_its_cluster() -> Result<()> {
    let env = testenv();
    let scratch = Scratch::new("slow")?;
    let plugin = Plugin {
        delay: 5,
        slow_from: 1,
        life: 0,
    };
    let (main, file, dir, context) = with_plugin(env, &scratch, plugin).await?;
    let t0 = Instant::now();
    let mut live = live_on(&[&main, &file]).await?;
    let others = others(env, &context);
    live.wait("the other clusters live", Duration::from_secs(3), |m| {
        all_live(m, &others).then_some(())
    })
    .await?;
    let others_live = t0.elapsed();
    let model = live.json();
    let c = cluster(&model, &context).context("the plugin's cluster")?;
    assert_eq!(
        c["connection"], "connecting",
        "the plugin still runs when the others are live ({others_live:?})"
    );
    live.wait(
        "the cluster says its plugin is running",
        Duration::from_secs(4),
        |m| {
            let note = cluster(m, &context)?["notes"]["credentials"].as_str()?;
            note.contains("credential plugin `plugin.sh` running for")
                .then_some(())
        },
    )
    .await?;
    live.wait("the plugin's cluster live", Duration::from_secs(15), |m| {
        (cluster(m, &context)?["connection"] == "live").then_some(())
    })
    .await?;
    assert!(
        t0.elapsed() >= Duration::from_secs(5),
        "it waited for the plugin"
    );
    assert!(
        others_live < Duration::from_secs(3),
        "the others were live after {others_live:?}"
    );
    let model = live.json();
    assert!(
        cluster(&model, &context).is_some_and(|c| c["notes"]["credentials"].is_null()),
        "the progress note is gone once the plugin answered"
    );
    assert_eq!(runs(&dir), 1, "the plugin runs once, not once per client");
    Ok(())
}

/// A token that expires after 4 s, and a refresh that takes 5 s: the cluster keeps working
/// with the old token while the plugin runs (its heartbeat keeps landing), then takes the new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_is_refreshed_without_pausing_anything() -> Result<()> {
    let env = testenv();
    let scratch = Scratch::new("refresh")?;
    let plugin = Plugin {
        delay: 5,
        slow_from: 2,
        life: 4,
    };
    let (main, file, dir, context) = with_plugin(env, &scratch, plugin).await?;
    let before = meshtop::sources::kube::stats::snapshot(&context).token_refreshes;
    let mut live = live_on(&[&main, &file]).await?;
    live.wait_all_live(&env.contexts).await?;
    // The refresh starts 2 s in (half of the token's life) and runs 5 s.
    let t0 = Instant::now();
    while runs(&dir) < 2 {
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("the plugin was not asked for a new token");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let during = live.json();
    let stamp = |m: &Value| cluster(m, &context).and_then(|c| c["last_update"].as_u64());
    let first = stamp(&during).context("last_update")?;
    // While the refresh runs, the cluster's heartbeat (every 3 s) keeps landing.
    live.wait(
        "the cluster answering during the refresh",
        Duration::from_secs(4),
        |m| {
            let c = cluster(m, &context)?;
            (c["connection"] == "live" && c["last_update"].as_u64()? > first).then_some(())
        },
    )
    .await?;
    assert_eq!(
        meshtop::sources::kube::stats::snapshot(&context).token_refreshes,
        before,
        "the refresh was still running"
    );
    let t1 = Instant::now();
    while meshtop::sources::kube::stats::snapshot(&context).token_refreshes == before {
        if t1.elapsed() > Duration::from_secs(10) {
            bail!("the refreshed token never arrived");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let model = live.json();
    assert!(all_live(&model, &env.contexts), "{model}");
    drop(live);
    wait_no_plugin_processes(&dir, Duration::from_secs(5))?;
    Ok(())
}

/// `--once` keeps its bound whatever a plugin does: a plugin that never answers, a context
/// whose server refuses connections; no plugin process is left, nothing of its stderr shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_keeps_its_bound_with_a_hanging_plugin() -> Result<()> {
    let env = testenv();
    let scratch = Scratch::new("once")?;
    let plugin = Plugin {
        delay: 100_000,
        slow_from: 1,
        life: 0,
    };
    let (main, file, dir, context) = with_plugin(env, &scratch, plugin).await?;
    let full = full_kubeconfig(env)?;
    let first = env.contexts.first().cloned().context("a context")?;
    let mut refusing = entry(&full, "clusters", &first)?;
    refusing["cluster"]["server"] = "https://127.0.0.1:1".into();
    let user = entry(&full, "users", &format!("{first}-admin"))?;
    let dead = scratch.path("dead.yaml");
    write_yaml(
        &dead,
        &one_context(&full, &first, "refusing", refusing, user)?,
    )?;
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_meshtop"))
        .args(["--once", "-o", "json", "--timeout", "4", "--log-file"])
        .arg(scratch.path("once.log"))
        .env("KUBECONFIG", kubeconfig_var(&[&main, &file, &dead]))
        .output()?;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(6500),
        "--once --timeout 4 took {took:?}"
    );
    assert_eq!(out.status.code(), Some(1), "not every cluster is live");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stderr.contains(STDERR_MARKER) && !stdout.contains(STDERR_MARKER));
    let model: Value = serde_json::from_str(&stdout)?;
    for c in others(env, &context) {
        assert_eq!(
            cluster(&model, &c).context("cluster")?["connection"],
            "live"
        );
    }
    let c = cluster(&model, &context).context("the plugin's cluster")?;
    assert_eq!(c["connection"], "connecting", "{c}");
    assert!(
        c["notes"]["credentials"]
            .as_str()
            .is_some_and(|n| n.contains("credential plugin `plugin.sh` running for")),
        "{c}"
    );
    let r = cluster(&model, "refusing").context("the refusing context")?;
    assert_eq!(r["connection"], "down", "{r}");
    wait_no_plugin_processes(&dir, Duration::from_secs(2))?;
    let log = std::fs::read_to_string(scratch.path("once.log"))?;
    assert!(
        !log.contains(STDERR_MARKER),
        "the plugin's text reached the log"
    );
    Ok(())
}

/// Two files that both call their context `admin`, for two different API servers: both
/// watched, the second named after its file, and selectable by that name. The same API server
/// under a second context is one cluster, with a note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_of_the_same_name_in_two_files_are_both_watched() -> Result<()> {
    let env = testenv();
    let scratch = Scratch::new("dup")?;
    let full = full_kubeconfig(env)?;
    let (a, b) = (&env.contexts[0], &env.contexts[1]);
    let file_of = |ctx: &str, name: &str| -> Result<Yaml> {
        let cluster = entry(&full, "clusters", ctx)?;
        let user = entry(&full, "users", &format!("{ctx}-admin"))?;
        one_context(&full, ctx, name, cluster, user)
    };
    let fa = scratch.path("kubeadm-a.yaml");
    let fb = scratch.path("kubeadm-b.yaml");
    let fc = scratch.path("kubeadm-c.yaml");
    write_yaml(&fa, &file_of(a, "admin")?)?;
    write_yaml(&fb, &file_of(b, "admin")?)?;
    // The same API server as the first file, under another name.
    write_yaml(&fc, &file_of(a, "also-a")?)?;
    let (targets, problems) = meshtop::sources::kube::kubeconfig::resolve_files(
        &[fa.clone(), fb.clone(), fc.clone()],
        &[],
        &Default::default(),
    )?;
    assert_eq!(
        problems,
        ["context \"also-a\" reaches the same API server: shown once, as \"admin\""]
    );
    let mut live = Live::from_targets(targets);
    let names = ["admin".to_string(), "admin (kubeadm-b.yaml)".to_string()];
    live.wait_all_live(&names).await?;
    let model = live.json();
    let all: Vec<String> = common::live::clusters(&model)
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(all.len(), 2, "one cluster per API server: {all:?}");
    let second = cluster(&model, &names[1]).context("the second admin")?;
    assert!(
        second["notes"]["kubeconfig"]
            .as_str()
            .is_some_and(|n| n.contains("kubectl sees only")),
        "{second}"
    );
    let first = cluster(&model, "admin").context("the first admin")?;
    assert!(
        first["notes"]["kubeconfig"]
            .as_str()
            .is_some_and(|n| n.contains("\"also-a\"") && n.contains("same API server")),
        "{first}"
    );
    // The endpoints each shows are its own cluster's.
    assert_eq!(second["cluster_id"], b.as_str(), "{second}");
    assert_eq!(first["cluster_id"], a.as_str(), "{first}");
    drop(live);

    // Selectable by the shown name.
    let (targets, _) = meshtop::sources::kube::kubeconfig::resolve_files(
        &[fa.clone(), fb.clone()],
        &[names[1].clone()],
        &Default::default(),
    )?;
    assert_eq!(
        targets
            .iter()
            .map(|t| t.context.as_str())
            .collect::<Vec<_>>(),
        [names[1].as_str()]
    );
    Ok(())
}

/// A self-signed client certificate signed by the environment's CA, valid in 2020 only, in
/// group system:masters: the API server refuses it as expired.
fn expired_certificate(env: &TestEnv, dir: &Path) -> Result<(String, String)> {
    let pki = env.state_dir.join("pki");
    let d = dir.join("ca");
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join("index.txt"), "")?;
    std::fs::write(d.join("serial"), "1000\n")?;
    std::fs::write(
        d.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = c\n[c]\ndatabase = {0}/index.txt\nserial = {0}/serial\n\
             new_certs_dir = {0}\ndefault_md = sha256\npolicy = p\nx509_extensions = ext\n\
             [p]\ncommonName = supplied\norganizationName = optional\n\
             [ext]\nbasicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = clientAuth\n",
            d.display()
        ),
    )?;
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl").args(args).output()?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let key = d.join("client.key");
    let csr = d.join("client.csr");
    let crt = d.join("client.crt");
    let s = |p: &Path| p.display().to_string();
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &s(&key),
    ])?;
    run(&[
        "req",
        "-new",
        "-key",
        &s(&key),
        "-subj",
        "/O=system:masters/CN=expired",
        "-out",
        &s(&csr),
    ])?;
    run(&[
        "ca",
        "-batch",
        "-config",
        &s(&d.join("ca.cnf")),
        "-cert",
        &s(&pki.join("ca.crt")),
        "-keyfile",
        &s(&pki.join("ca.key")),
        "-in",
        &s(&csr),
        "-out",
        &s(&crt),
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200102000000Z",
        "-notext",
    ])?;
    Ok((s(&crt), s(&key)))
}

/// A plain HTTP CONNECT proxy on 127.0.0.1 that counts the tunnels it opened (only to
/// 127.0.0.1).
async fn connect_proxy() -> Result<(String, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).await.unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let mut client = reader.into_inner();
                let local = target.starts_with("127.0.0.1:") || target.starts_with("localhost:");
                if !line.starts_with("CONNECT ") || !local {
                    let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                    return;
                }
                let target = target.replace("localhost:", "127.0.0.1:");
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                seen.fetch_add(1, Ordering::SeqCst);
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    Ok((url, count))
}

/// The other kubeconfig shapes kubectl accepts, each with a clear state on its own cluster
/// and nothing else disturbed: a missing file in `KUBECONFIG`, a context naming a missing
/// cluster or user, a client certificate file that is gone, `proxy-url`, `tls-server-name`
/// (right and wrong), a token file, an expired client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kubeconfig_shape_gets_a_clear_state_on_its_cluster() -> Result<()> {
    let env = testenv();
    let scratch = Scratch::new("shapes")?;
    let full = full_kubeconfig(env)?;
    // meshtop shows one API server once: each shape reaching a real server uses another one,
    // or another spelling of its address (`localhost`), so two runs cover them all.
    let mut first: Vec<PathBuf> = vec![env.kubeconfig.clone()];
    let mut second: Vec<PathBuf> = vec![env.kubeconfig.clone()];
    let on = |files: &mut Vec<PathBuf>,
              name: &str,
              server_of: &str,
              cluster_yaml: Yaml,
              user: Yaml|
     -> Result<()> {
        let path = scratch.path(&format!("{name}.yaml"));
        write_yaml(
            &path,
            &one_context(&full, server_of, name, cluster_yaml, user)?,
        )?;
        files.push(path);
        Ok(())
    };
    let localhost = |context: &str| -> Result<Yaml> {
        let mut c = entry(&full, "clusters", context)?;
        let server = c["cluster"]["server"]
            .as_str()
            .context("server")?
            .to_string();
        c["cluster"]["server"] = server.replace("127.0.0.1", "localhost").into();
        Ok(c)
    };
    let admin = |context: &str| entry(&full, "users", &format!("{context}-admin"));
    let [a, b, c] = [&env.contexts[0], &env.contexts[1], &env.contexts[2]];

    // A context naming a cluster no file defines; one naming a user no file defines. Neither
    // connects (nor does one whose certificate file is gone): their servers are placeholders.
    let missing = scratch.path("missing-entries.yaml");
    std::fs::write(
        &missing,
        "apiVersion: v1\nkind: Config\nusers: []\n\
         clusters:\n- name: placeholder\n  cluster:\n    server: https://localhost:1\n\
         contexts:\n- name: no-cluster\n  context:\n    cluster: nowhere\n    user: nobody\n\
         - name: no-user\n  context:\n    cluster: placeholder\n    user: nobody\n",
    )?;
    first.push(missing);

    // A client certificate file that is gone.
    let mut gone = admin(a)?;
    if let Some(u) = gone["user"].as_mapping_mut() {
        u.remove("client-certificate-data");
        u.insert(
            "client-certificate".into(),
            scratch.path("gone.crt").display().to_string().into(),
        );
    }
    let mut placeholder = entry(&full, "clusters", a)?;
    placeholder["cluster"]["server"] = "https://localhost:2".into();
    on(&mut first, "cert-gone", a, placeholder, gone)?;

    // proxy-url through a CONNECT proxy on 127.0.0.1.
    let (proxy, tunnels) = connect_proxy().await?;
    let mut proxied = localhost(a)?;
    proxied["cluster"]["proxy-url"] = proxy.clone().into();
    on(&mut first, "proxied", a, proxied, admin(a)?)?;

    // tls-server-name: a name in the server's certificate (and, below, one that is not).
    let mut named = localhost(b)?;
    named["cluster"]["tls-server-name"] = "kubernetes.default".into();
    on(&mut first, "tls-name", b, named, admin(b)?)?;

    // A token file.
    let token_path = scratch.path("token");
    std::fs::write(&token_path, token(env, c).await?)?;
    let by_token: Yaml = serde_yaml::from_str(&format!(
        "{{name: t, user: {{tokenFile: {:?}}}}}",
        token_path.display().to_string()
    ))?;
    on(&mut first, "token-file", c, localhost(c)?, by_token)?;

    // An expired client certificate; a tls-server-name the certificate does not hold.
    let (crt, key) = expired_certificate(env, &scratch.0)?;
    let expired: Yaml = serde_yaml::from_str(&format!(
        "{{name: e, user: {{client-certificate: {crt:?}, client-key: {key:?}}}}}"
    ))?;
    on(&mut second, "expired", a, localhost(a)?, expired)?;
    let mut wrong = localhost(b)?;
    wrong["cluster"]["tls-server-name"] = "not-in-the-certificate.example".into();
    on(&mut second, "tls-name-wrong", b, wrong, admin(b)?)?;

    // A file of KUBECONFIG that does not exist: skipped, and said so.
    first.insert(1, scratch.path("does-not-exist.yaml"));
    let (targets, problems) =
        meshtop::sources::kube::kubeconfig::resolve_files(&first, &[], &Default::default())?;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("does-not-exist.yaml") && p.contains("skipped")),
        "{problems:?}"
    );
    let state = |name: &'static str, connection: &'static str, text: &'static str| {
        move |m: &Value| {
            let c = cluster(m, name)?;
            (c["connection"] == connection && c["error"].as_str().unwrap_or("").contains(text))
                .then_some(())
        }
    };
    let mut live = Live::from_targets(targets);
    live.wait_all_live(&env.contexts).await?;
    live.wait(
        "proxied live",
        Duration::from_secs(20),
        state("proxied", "live", ""),
    )
    .await?;
    assert!(
        tunnels.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the proxy was used"
    );
    live.wait(
        "tls-name live",
        Duration::from_secs(20),
        state("tls-name", "live", ""),
    )
    .await?;
    live.wait(
        "token-file live",
        Duration::from_secs(20),
        state("token-file", "live", ""),
    )
    .await?;
    live.wait(
        "no-cluster down",
        Duration::from_secs(10),
        state(
            "no-cluster",
            "down",
            "names cluster \"nowhere\", which no kubeconfig file defines",
        ),
    )
    .await?;
    live.wait(
        "no-user auth error",
        Duration::from_secs(10),
        state("no-user", "auth error", "names user \"nobody\""),
    )
    .await?;
    live.wait(
        "cert-gone down, naming the file",
        Duration::from_secs(10),
        state("cert-gone", "down", "gone.crt"),
    )
    .await?;
    assert!(all_live(&live.json(), &env.contexts));
    drop(live);

    let (targets, problems) =
        meshtop::sources::kube::kubeconfig::resolve_files(&second, &[], &Default::default())?;
    assert!(problems.is_empty(), "{problems:?}");
    let mut live = Live::from_targets(targets);
    live.wait(
        "the wrong tls-server-name down",
        Duration::from_secs(15),
        state("tls-name-wrong", "down", "certificate"),
    )
    .await?;
    live.wait(
        "expired: auth error with the date",
        Duration::from_secs(15),
        state(
            "expired",
            "auth error",
            "expired at 2020-01-02 00:00:00 UTC",
        ),
    )
    .await?;
    // Nothing of this disturbed the real clusters.
    live.wait_all_live(&env.contexts).await?;
    Ok(())
}

/// In a real terminal: the first frame and the other clusters do not wait for a plugin that
/// hangs, keys answer while it runs, the cluster says what it waits for, `q` quits at once and
/// leaves no plugin process; and nothing but the dashboard writes to the terminal (the
/// plugin's stderr, meshtop's log lines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_plugin_in_the_terminal_neither_delays_nor_writes_nor_survives_q() -> Result<()> {
    let env = testenv();
    let scratch = Scratch::new("tmux")?;
    let plugin = Plugin {
        delay: 100_000,
        slow_from: 1,
        life: 0,
    };
    let (main, file, dir, context) = with_plugin(env, &scratch, plugin).await?;
    let log = scratch.path("meshtop.log");
    let recording = scratch.path("terminal.bytes");
    std::fs::write(&recording, "")?;
    let command = format!(
        "sleep 0.3; {} --log-file {} --log-level debug; echo MESHTOP-EXIT:$?; sleep 30",
        env!("CARGO_BIN_EXE_meshtop"),
        log.display()
    );
    let kubeconfig = kubeconfig_var(&[&main, &file]);
    let tmux = Tmux::start("plugin", &command, &[("KUBECONFIG", &kubeconfig)]);
    // Record from before meshtop starts (the shell sleeps 0.3 s first).
    tmux.record(&recording);
    let t0 = Instant::now();
    let others = others(env, &context);
    let (_, first) = tmux.wait("the first frame", Duration::from_secs(3), |s| {
        s.contains("live ·")
    });
    let (screen, live_after) = tmux.wait("the other clusters live", Duration::from_secs(4), |s| {
        // The tree's pane: a cluster's line there says `connecting` until it is live.
        others.iter().all(|c| {
            s.lines()
                .filter_map(|l| l.split('│').nth(1))
                .any(|l| l.contains(&format!(" {c} ")) && !l.contains("connecting"))
        })
    });
    eprintln!("first frame after {first:?}, the other clusters after {live_after:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{screen}");
    tmux.wait(
        "the plugin's cluster says why it waits",
        Duration::from_secs(6),
        |s| s.contains("credential plugin `plugin.sh` running"),
    );
    // A key answers while the plugin runs.
    let k0 = Instant::now();
    tmux.key("?");
    tmux.wait("help", Duration::from_secs(2), |s| {
        s.contains("Any key closes this help")
    });
    eprintln!("help after {:?}", k0.elapsed());
    tmux.key("x");
    tmux.wait("help closed", Duration::from_secs(2), |s| {
        !s.contains("Any key closes this help")
    });
    assert!(
        runs(&dir) >= 1 && !plugin_processes(&dir).is_empty(),
        "the plugin runs"
    );
    let q0 = Instant::now();
    tmux.key("q");
    let (screen, _) = tmux.wait("meshtop exited", Duration::from_secs(3), |s| {
        s.contains("MESHTOP-EXIT:")
    });
    let quit = q0.elapsed();
    assert!(screen.contains("MESHTOP-EXIT:0"), "{screen}");
    assert!(quit < Duration::from_secs(2), "q took {quit:?}");
    wait_no_plugin_processes(&dir, Duration::from_secs(2))?;
    let bytes = std::fs::read(&recording)?;
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.is_empty(), "the recording caught the dashboard");
    assert!(
        !text.contains(STDERR_MARKER),
        "the plugin's stderr reached the terminal"
    );
    let log_text = std::fs::read_to_string(&log)?;
    assert!(
        !log_text.contains(STDERR_MARKER),
        "the plugin's text reached the log"
    );
    // meshtop's own log lines (debug level, so there are many) never reach the terminal.
    let sample = log_text
        .lines()
        .find(|l| l.contains("cluster state"))
        .context("a log line")?;
    assert!(
        !text.contains("cluster state"),
        "a log line reached the terminal: {sample}"
    );
    Ok(())
}

/// The terminal closes under meshtop (a closed window, a dropped SSH session: SIGHUP and a
/// dead tty) while a plugin hangs: meshtop still stops the plugin's whole process group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_terminal_leaves_no_plugin_behind() -> Result<()> {
    let env = testenv();
    let scratch = Scratch::new("hangup")?;
    let plugin = Plugin {
        delay: 100_000,
        slow_from: 1,
        life: 0,
    };
    let (main, file, dir, _) = with_plugin(env, &scratch, plugin).await?;
    let command = format!(
        "{} --log-file {}; sleep 30",
        env!("CARGO_BIN_EXE_meshtop"),
        scratch.path("meshtop.log").display()
    );
    let kubeconfig = kubeconfig_var(&[&main, &file]);
    let tmux = Tmux::start("hangup", &command, &[("KUBECONFIG", &kubeconfig)]);
    tmux.wait("the plugin running", Duration::from_secs(6), |s| {
        s.contains("credential plugin `plugin.sh` running")
    });
    assert!(!plugin_processes(&dir).is_empty(), "the plugin runs");
    drop(tmux);
    wait_no_plugin_processes(&dir, Duration::from_secs(3))?;
    Ok(())
}
