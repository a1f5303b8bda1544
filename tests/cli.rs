//! The binary's headless paths: `--once -o json|table`, and clear errors for bad input.

use std::process::Command;

fn meshtop(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meshtop"))
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("KUBECONFIG")
        .env("HOME", std::env::temp_dir().join("meshtop-cli-home"))
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("meshtop-cli-no-config"),
        )
        .output()
        .expect("binary runs")
}

#[test]
fn once_json_follows_the_documented_schema() {
    let out = meshtop(&["--demo", "--seed", "4", "--once", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let meshes = v["meshes"].as_array().unwrap();
    assert_eq!(meshes.len(), 2);
    let alpha = &meshes[0];
    assert_eq!(alpha["id"], "mesh-alpha");
    assert_eq!(alpha["trust_domain"], "cluster.local");
    let cluster = &alpha["networks"][0]["clusters"][0];
    for key in [
        "name",
        "role",
        "status",
        "served_by",
        "control_planes",
        "gateways",
    ] {
        assert!(!cluster[key].is_null(), "cluster lacks {key}");
    }
    let cp = &cluster["control_planes"][0];
    for key in [
        "name",
        "revision",
        "ready",
        "version",
        "connected_proxies",
        "remote_clusters",
    ] {
        assert!(!cp[key].is_null(), "control plane lacks {key}");
    }
    assert!(cp["remote_clusters"][0]["id"].is_string());
    assert!(cp["remote_clusters"][0]["status"].is_string());
    let gw = &cluster["gateways"][0];
    for key in ["name", "kind", "ready_pods", "pods", "address", "healthy"] {
        assert!(gw.get(key).is_some(), "gateway lacks {key}");
    }
    let svc = &alpha["services"][0];
    let ep = &svc["endpoints"][0];
    for key in ["cluster", "network", "locality", "ready", "not_ready"] {
        assert!(!ep[key].is_null(), "endpoint group lacks {key}");
    }
    assert!(alpha["tenants"][0]["clusters"][0]["injection"].is_string());
    assert!(alpha["findings"][0]["severity"].is_string());
    // Every demo cluster is reached: the group apart is there, and empty.
    assert_eq!(v["not_connected"], serde_json::json!([]));
    assert_eq!(v["findings"], serde_json::json!([]));
    let total_services: usize = meshes
        .iter()
        .map(|m| m["services"].as_array().unwrap().len())
        .sum();
    assert!(total_services >= 30, "{total_services}");
    // Remote secrets are read for their keys only: no value may leave the process.
    assert!(
        !text.contains("ZGVtbw=="),
        "a secret value leaked into the output"
    );
}

#[test]
fn once_table_is_a_human_summary() {
    let out = meshtop(&["--demo", "--once"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("MESH ✔ mesh-alpha"), "{text}");
    assert!(text.contains("CLUSTER"));
    assert!(text.contains("east-2") && text.contains("remote"));
}

#[test]
fn bad_input_gets_a_clear_message() {
    let out = meshtop(&["--demo", "--once", "--theme", "no-such-theme"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown theme \"no-such-theme\""), "{err}");
    assert!(
        err.contains("dark") && err.contains("mono"),
        "lists the choices: {err}"
    );

    let dir = std::env::temp_dir().join(format!("meshtop-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, "theme = [\n").unwrap();
    let out = meshtop(&["--demo", "--once", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.toml is not valid"), "{err}");

    let theme = dir.join("broken.toml");
    std::fs::write(&theme, "name = \"broken\"\n[colors]\nbg = \"nope\"\n").unwrap();
    let out = meshtop(&["--demo", "--once", "--theme", theme.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.toml"));

    let out = meshtop(&[]);
    assert_eq!(out.status.code(), Some(2), "no kubeconfig is bad usage");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--demo"));
}

/// Bad usage or configuration exits 2, naming what is wrong (file, line and key for a config).
#[test]
fn bad_usage_and_configuration_exit_2() {
    let dir = std::env::temp_dir().join(format!("meshtop-cli-2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, "theme = \"dark\"\n[clusters.prod]\nistiod = \"x\"\n").unwrap();
    let out = meshtop(&["--demo", "--once", "--config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("config.toml") && err.contains("line 3") && err.contains("istiod"),
        "names file, line and key: {err}"
    );

    let out = meshtop(&["--demo", "--once", "--theme", "no-such-theme"]);
    assert_eq!(out.status.code(), Some(2));
    let out = meshtop(&["--demo", "--once", "--log-level", "loud"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown log level"));

    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: a, context: {cluster: c, user: u}}]\n",
    )
    .unwrap();
    let out = meshtop(&[
        "--once",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--context",
        "a,nope",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"nope\"") && err.contains("a"), "{err}");

    // A context that is there but refuses connections is not bad usage: exit 1, its state says why.
    let out = meshtop(&[
        "--once",
        "-o",
        "json",
        "--timeout",
        "1",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON even so");
    // Never reached: not a mesh of its own, listed apart with why.
    assert_eq!(v["meshes"].as_array().map(Vec::len), Some(0), "{v}");
    let c = &v["not_connected"][0];
    assert_eq!(c["name"], "a", "{c}");
    assert_eq!(c["connection"], "down", "{c}");
    assert_eq!(c["status"], "down", "{c}");
    assert!(c["error"].as_str().unwrap_or("").contains("refused"), "{c}");
    assert!(
        v["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["node"] == "cluster:a"
                && f["message"].as_str().unwrap_or("").contains("unreachable")),
        "{v}"
    );
    let out = meshtop(&[
        "--once",
        "--timeout",
        "1",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("NOT CONNECTED"), "{table}");
    assert!(!table.contains("MESH"), "no mesh of its own: {table}");
}
