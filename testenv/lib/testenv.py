#!/usr/bin/env python3
"""meshtop's local multi-cluster Istio test environment.

Subcommands (wrapped by testenv/up, testenv/down, testenv/env):
  up [--topology FILE|NAME] [--replicas R] [--services N] [--revisions REV[,REV...]]
                              bring every cluster of the topology up (idempotent);
                              --replicas: pods per tenant Deployment (default: frontend 2,
                              the others 1); --services: N more tenant Services+Deployments
                              (load-0..load-N-1, spread over the injected namespaces) in every
                              data-plane cluster; --revisions: every primary also runs an
                              istiod of each named revision (e.g. canary), beside `default`
  down                        stop what `up` started (pid files) and remove the state dir
  env                         print `export KUBECONFIG=...` while an environment runs

Everything listens on and dials 127.0.0.1 only; see testenv/README.md ("Network rule").
Only the Python standard library, PyYAML and openssl(1) are used here; all Kubernetes and
Istio work is done by the real binaries that testenv/build puts in the cache.
"""

import base64
import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import yaml

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # testenv/
CACHE_ROOT = os.environ.get("MESHTOP_TESTENV_CACHE", os.path.expanduser("~/.cache/meshtop-testenv"))
STATE = os.path.abspath(os.environ.get("MESHTOP_TESTENV_STATE", os.path.join(CACHE_ROOT, "state")))
MESH_ID = "mesh1"
TRUST_DOMAIN = "cluster.local"
SYSTEM_NS = "istio-system"
LOOPBACK = "127.0.0.1"
# Addresses written into east-west gateway Service status (RFC 5737 TEST-NET-1). They are
# data only: nothing in the environment dials them (see README, "Network rule").
GATEWAY_ADDR_PREFIX = "192.0.2."
TENANTS = [
    # namespace, labels
    ("shop", {"istio-injection": "enabled"}),
    ("payments", {"istio.io/rev": "default"}),
    ("legacy", {"istio-injection": "disabled"}),
    # A revision tag (MutatingWebhookConfiguration istio-revision-tag-prod, by istioctl).
    ("checkout", {"istio.io/rev": "prod"}),
]
REVISION_TAG = "prod"
# (namespace, name, replicas per cluster role index) deployed in EVERY cluster, so the
# same service exists in several clusters and its endpoints merge in istiod.
WORKLOADS = [("shop", "frontend", 2), ("shop", "cart", 1), ("payments", "ledger", 1), ("legacy", "batch", 1),
             ("checkout", "api", 1)]
# Namespaces whose pods pass the injector (extra --services go there).
INJECTED_NAMESPACES = ["shop", "payments", "checkout"]
# The istiod ports each local istiod gets (a free 127.0.0.1 port each), and the istiod pod
# port that kwok's port-forward sends to each of them.
ISTIOD_PORTS = ("http", "https", "grpc", "secureGRPC", "monitoring", "ctrlz")
ISTIOD_POD_PORTS = ((15014, "monitoring"), (8080, "http"), (15017, "https"), (15010, "grpc"), (15012, "secureGRPC"))


def revisions_of(c, knobs):
    """The extra istiod revisions (`up --revisions`) a cluster runs: every primary runs them."""
    return list(knobs.get("revisions") or []) if c.role == "primary" else []


def workloads(knobs):
    """WORKLOADS, scaled by the `up` knobs: --replicas R (every tenant Deployment gets R pods)
    and --services N (N more Services+Deployments load-<i> over the injected namespaces)."""
    r = knobs.get("replicas")
    out = [(ns, name, r if r is not None else n) for ns, name, n in WORKLOADS]
    for i in range(knobs.get("services") or 0):
        out.append((INJECTED_NAMESPACES[i % len(INJECTED_NAMESPACES)], f"load-{i}", r if r is not None else 1))
    return out

T0 = time.time()


def log(msg):
    print(f"[testenv {time.time() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log("ERROR: " + msg)
    sys.exit(1)


# ------------------------------------------------------------------------------------------
# helpers


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for(what, fn, timeout, interval=0.2):
    """Poll fn() until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - surfaced on timeout
            last = e
        time.sleep(interval)
    die(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last})" if last else ""))


def run(cmd, *, input=None, check=True, env=None, cwd=None, capture=True):
    p = subprocess.run(cmd, input=input, capture_output=capture, text=True, env=env, cwd=cwd)
    if check and p.returncode != 0:
        die(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p


def sidecars_bin():
    p = run([os.path.join(HERE, "build"), "--print-sidecars"], check=False)
    if p.returncode != 0:
        die("the sidecars binary is not built; run testenv/build")
    return p.stdout.strip().splitlines()[-1]


def bin_dir(build_if_missing=True):
    p = run([os.path.join(HERE, "build"), "--print"], check=False)
    if p.returncode == 0:
        return p.stdout.strip().splitlines()[-1]
    if not build_if_missing:
        die("binaries not built; run testenv/build")
    log("binaries missing: running testenv/build (a cold build takes tens of minutes)")
    p = subprocess.run([os.path.join(HERE, "build")], stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        die("testenv/build failed")
    return p.stdout.strip().splitlines()[-1]


def http_get(url, ctx=None, timeout=3):
    assert url.startswith("http://127.0.0.1:") or url.startswith("https://127.0.0.1:"), url
    with urllib.request.urlopen(url, context=ctx, timeout=timeout) as r:
        return r.status, r.read()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------------------
# topology


def load_topology(arg):
    if not arg:
        arg = os.path.join(HERE, "topologies", "multicluster.json")
    own = os.path.join(HERE, "topologies", arg.removesuffix(".json") + ".json")
    if not os.path.exists(arg) and "/" not in arg and os.path.exists(own):
        # A bare name of testenv's own topologies (testenv/topologies/<name>.json: multicluster,
        # federation) ...
        arg = own
    elif not os.path.exists(arg):
        # ... or of Istio's own prow topologies copied by testenv/build.
        cand = os.path.join(os.path.dirname(bin_dir()), "istio", "topology", arg.removesuffix(".json") + ".json")
        if not os.path.exists(cand):
            die(f"no topology file {arg}")
        arg = cand
    with open(arg) as f:
        raw = json.load(f)
    clusters = []
    names = {c["clusterName"] for c in raw}
    for i, c in enumerate(raw):
        if c.get("kind", "Kubernetes") != "Kubernetes":
            die(f"cluster {c['clusterName']}: kind {c.get('kind')} is not supported (only Kubernetes)")
        name = c["clusterName"]
        primary = c.get("primaryClusterName") or name
        cp = c.get("controlPlaneClusterName")
        if cp and not c.get("primaryClusterName"):
            # Istio's test framework reads only primaryClusterName; some of its files carry a
            # controlPlaneClusterName naming no cluster (multicluster-large.json): then it is
            # ignored, as Istio does.
            if cp in names:
                primary = cp
            else:
                log(f"cluster {name}: controlPlaneClusterName {cp} names no cluster; ignored (as Istio's framework does)")
        config = c.get("configClusterName") or name
        if primary not in names or config not in names:
            die(f"cluster {name}: primary {primary} or config cluster {config} is not in the topology")
        if primary == name:
            # A control plane host. With configClusterName naming another cluster it is an
            # external control plane: its istiod serves (and reads its config from) that cluster.
            role = "primary" if config == name else "external"
        else:
            role = "config" if config == name else "remote"
        meta = c.get("meta") or {}
        fed = meta.get("federation") or None
        clusters.append({
            "name": name,
            "index": i,
            "network": c.get("network") or "network-1",
            # Mesh identity (topology `meta`, testenv's own keys): clusters with the same meshID
            # form one mesh; the default is Istio's test framework's mesh1 / cluster.local.
            "meshID": meta.get("meshID") or MESH_ID,
            "trustDomain": meta.get("trustDomain") or TRUST_DOMAIN,
            # Multi-mesh federation (see README, "Federation topology"): trust, exports,
            # imports and policies of this cluster. A cluster with it gets a plug-in CA
            # (Secret cacerts) from its mesh's own root.
            "federation": fed,
            "primary": primary,
            "configCluster": config,
            "role": role,
            "podSubnet": c.get("podSubnet") or f"10.{10 * (i + 1)}.0.0/16",
            "svcSubnet": c.get("svcSubnet") or f"10.255.{10 * (i + 1)}.0/24",
        })
    by = {c["name"]: c for c in clusters}
    for c in clusters:
        host = by[c["primary"]]
        if host["role"] not in ("primary", "external"):
            die(f"cluster {c['name']}: its control plane cluster {c['primary']} runs no control plane")
        if host["role"] == "external" and by[host["configCluster"]]["primary"] != host["name"]:
            die(f"external control plane {host['name']}: its config cluster must name it as primary")
        # The cluster id that the serving istiod runs with (CLUSTER_ID): its config cluster.
        c["istiodClusterId"] = host["configCluster"]
        if (c["meshID"], c["trustDomain"]) != (host["meshID"], host["trustDomain"]):
            die(f"cluster {c['name']}: its mesh id / trust domain differ from its control plane cluster's")
        # Data-plane clusters get nodes' workloads, tenants and a remote secret; a pure
        # external control plane host only runs istiod (and its gateways).
        c["dataPlane"] = c["role"] != "external"
    networks = sorted({c["network"] for c in clusters})
    for c in clusters:
        n = networks.index(c["network"])
        c["region"] = f"region{n + 1}"
        c["zones"] = [f"region{n + 1}-zone{c['index'] + 1}a", f"region{n + 1}-zone{c['index'] + 1}b"]
        c["gatewayAddress"] = GATEWAY_ADDR_PREFIX + str(10 + c["index"])
        c["hasGateway"] = c["role"] in ("primary", "external") or c["network"] != next(
            x for x in clusters if x["name"] == c["primary"])["network"]
    return arg, clusters


# ------------------------------------------------------------------------------------------
# PKI (openssl)


def openssl(*args):
    run(["openssl", *args])


def make_ca(d):
    if os.path.exists(f"{d}/ca.crt"):
        return
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/ca.key")
    openssl("req", "-x509", "-new", "-key", f"{d}/ca.key", "-days", "3650", "-subj", "/CN=meshtop-testenv-ca",
            "-out", f"{d}/ca.crt")


def make_cert(d, name, cn, org=None, sans=None, client=False):
    key, crt, csr, ext = (f"{d}/{name}.{x}" for x in ("key", "crt", "csr", "ext"))
    if os.path.exists(crt):
        return
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    subj = f"/CN={cn}" + (f"/O={org}" if org else "")
    openssl("req", "-new", "-key", key, "-subj", subj, "-out", csr)
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n")
        f.write("extendedKeyUsage=" + ("clientAuth" if client else "serverAuth,clientAuth") + "\n")
        if sans:
            f.write("subjectAltName=" + ",".join(sans) + "\n")
    openssl("x509", "-req", "-in", csr, "-CA", f"{STATE}/pki/ca.crt", "-CAkey", f"{STATE}/pki/ca.key",
            "-CAcreateserial", "-days", "3650", "-extfile", ext, "-out", crt)


def make_mesh_root(mesh_id):
    """A self-signed root per mesh (federation): <STATE>/pki/meshes/<mesh>/root-cert.pem."""
    d = f"{STATE}/pki/meshes/{mesh_id}"
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(f"{d}/root-cert.pem"):
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/root-key.pem")
        openssl("req", "-x509", "-new", "-key", f"{d}/root-key.pem", "-days", "3650", "-sha256",
                "-subj", f"/O=meshtop-testenv/CN={mesh_id} root CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-out", f"{d}/root-cert.pem")
    return f"{d}/root-cert.pem"


def make_plugin_cacerts(c):
    """Istio's plug-in CA files for one cluster (what Secret istio-system/cacerts holds and the
    istiod Deployment mounts at /etc/cacerts): an intermediate CA signed by its mesh's root.
    Returns the directory holding ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem."""
    root_dir = os.path.dirname(make_mesh_root(c.meshID))
    d = f"{c.dir}/cacerts"
    work = f"{c.dir}/cacerts-work"
    os.makedirs(d, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    if not os.path.exists(f"{d}/cert-chain.pem"):
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/ca-key.pem")
        openssl("req", "-new", "-key", f"{d}/ca-key.pem", "-subj",
                f"/O=meshtop-testenv/CN={c.meshID} intermediate CA {c.name}", "-out", f"{work}/ca.csr")
        with open(f"{work}/ca.ext", "w") as f:
            f.write("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                    "keyUsage=critical,digitalSignature,keyCertSign,cRLSign\n")
        openssl("x509", "-req", "-in", f"{work}/ca.csr", "-CA", f"{root_dir}/root-cert.pem",
                "-CAkey", f"{root_dir}/root-key.pem", "-CAcreateserial", "-CAserial", f"{work}/root.srl",
                "-days", "3000", "-sha256", "-extfile", f"{work}/ca.ext", "-out", f"{d}/ca-cert.pem")
        shutil.copyfile(f"{root_dir}/root-cert.pem", f"{d}/root-cert.pem")
        with open(f"{d}/cert-chain.pem", "w") as f:
            for n in ("ca-cert.pem", "root-cert.pem"):
                with open(f"{d}/{n}") as g:
                    f.write(g.read())
    return d


def cert_info(pem):
    """SHA-256 of the DER (lowercase hex), subject (openssl's one-line form) and notAfter
    (RFC 3339 UTC) of the first certificate of a PEM string, by openssl."""
    out = run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-subject", "-enddate"], input=pem).stdout
    info = {}
    for line in out.splitlines():
        k, _, v = line.partition("=")
        if k.lower().endswith("fingerprint"):
            info["sha256"] = v.strip().replace(":", "").lower()
        elif k == "subject":
            info["subject"] = v.strip()
        elif k == "notAfter":
            t = time.strptime(v.strip(), "%b %d %H:%M:%S %Y GMT")
            info["notAfter"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", t)
    return info


def b64file(p):
    with open(p, "rb") as f:
        return base64.b64encode(f.read()).decode()


# ------------------------------------------------------------------------------------------
# processes


class Procs:
    def __init__(self, bindir):
        self.bin = bindir
        os.makedirs(f"{STATE}/pids", exist_ok=True)
        os.makedirs(f"{STATE}/logs", exist_ok=True)

    def start(self, name, argv, env=None, cwd=None):
        logf = open(f"{STATE}/logs/{name}.log", "ab")
        exe = argv[0] if argv[0].startswith("/") else os.path.join(self.bin, argv[0])
        e = dict(os.environ)
        # Never let a component pick up a proxy or an in-cluster config from the caller.
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "KUBERNETES_SERVICE_HOST"):
            e.pop(k, None)
        e["NO_PROXY"] = "127.0.0.1,localhost"
        e.update(env or {})
        p = subprocess.Popen([exe, *argv[1:]], stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=e, cwd=cwd or STATE, start_new_session=True)
        with open(f"{STATE}/pids/{name}.pid", "w") as f:
            f.write(f"{p.pid}\n{exe}\n")
        return p

    def check_alive(self, name):
        pid, _ = read_pid(f"{STATE}/pids/{name}.pid")
        if not pid or not pid_alive(pid):
            tail = ""
            try:
                with open(f"{STATE}/logs/{name}.log", errors="replace") as f:
                    tail = "".join(f.readlines()[-25:])
            except OSError:
                pass
            die(f"{name} exited; last log lines:\n{tail}")


def read_pid(path):
    try:
        with open(path) as f:
            lines = f.read().split("\n")
        return int(lines[0]), (lines[1] if len(lines) > 1 else "")
    except (OSError, ValueError):
        return None, None


def stop_all():
    d = f"{STATE}/pids"
    if not os.path.isdir(d):
        return 0
    victims = []
    for fn in sorted(os.listdir(d)):
        pid, exe = read_pid(os.path.join(d, fn))
        if not pid or not pid_alive(pid):
            continue
        try:
            real = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            real = ""
        # Only signal a process that still runs the binary we started (pids get reused).
        if exe and os.path.realpath(exe) != real.removesuffix(" (deleted)"):
            continue
        victims.append((fn, pid))
    # Istio first, then the Kubernetes components, etcd last.
    order = lambda v: (0 if v[0].startswith(("istiod", "sidecars")) else 2 if v[0].startswith("etcd") else 1)
    for group in (0, 1, 2):
        gv = [v for v in victims if order(v) == group]
        for _, pid in gv:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        # Components get a short grace period (istiod and kube-apiserver otherwise drain
        # watches for tens of seconds); the state is thrown away anyway.
        deadline = time.time() + 3
        while time.time() < deadline and any(pid_alive(p) for _, p in gv):
            time.sleep(0.1)
        for _, pid in gv:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
    return len(victims)


# ------------------------------------------------------------------------------------------
# Kubernetes access


class Cluster:
    def __init__(self, spec, bindir):
        self.__dict__.update(spec)
        self.bin = bindir
        self.dir = f"{STATE}/clusters/{self.name}"
        self.kubeconfig = f"{self.dir}/admin.kubeconfig"

    def kubectl(self, *args, input=None, check=True):
        return run([f"{self.bin}/kubectl", "--kubeconfig", self.kubeconfig, *args], input=input, check=check)

    def apply(self, docs, server_side=True):
        if not docs:
            return None
        text = yaml.safe_dump_all(docs, sort_keys=False) if not isinstance(docs, str) else docs
        args = ["apply", "-f", "-"]
        if server_side:
            args += ["--server-side", "--force-conflicts", "--field-manager=meshtop-testenv"]
        return self.kubectl(*args, input=text)

    def get_json(self, *args):
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def ssl_ctx(self):
        ctx = ssl.create_default_context(cafile=f"{STATE}/pki/ca.crt")
        ctx.load_cert_chain(f"{self.dir}/admin.crt", f"{self.dir}/admin.key")
        return ctx

    def readyz(self):
        st, body = http_get(f"https://127.0.0.1:{self.ports['apiserver']}/readyz", self.ssl_ctx())
        return st == 200 and body.strip() == b"ok"


def write_kubeconfig(path, entries):
    """entries: list of (context name, server, ca path, cert path, key path)."""
    cfg = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": [],
           "current-context": entries[0][0], "preferences": {}}
    for name, server, ca, crt, key in entries:
        cfg["clusters"].append({"name": name, "cluster": {"server": server, "certificate-authority-data": b64file(ca)}})
        cfg["users"].append({"name": f"{name}-admin", "user": {"client-certificate-data": b64file(crt),
                                                              "client-key-data": b64file(key)}})
        cfg["contexts"].append({"name": name, "context": {"cluster": name, "user": f"{name}-admin"}})
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------
# up


def audit_args(c):
    """MESHTOP_TESTENV_AUDIT=1 (diagnostics, not a knob): every API server writes an audit log
    at Metadata level (verb, URI with its query, user, user agent, response code) to
    `logs/audit-<cluster>.log`, e.g. to tell which client LISTs or port-forwards."""
    if os.environ.get("MESHTOP_TESTENV_AUDIT") != "1":
        return []
    policy = f"{STATE}/audit-policy.yaml"
    with open(policy, "w") as f:
        f.write("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n"
                "rules:\n- level: Metadata\n")
    return [f"--audit-policy-file={policy}", f"--audit-log-path={STATE}/logs/audit-{c.name}.log",
            "--audit-log-format=json", "--audit-log-mode=blocking"]


def start_control_planes(procs, clusters, etcd_port, knobs):
    for c in clusters:
        os.makedirs(c.dir, exist_ok=True)
        pki = c.dir
        make_cert(pki, "apiserver", "kube-apiserver",
                  sans=["IP:127.0.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
                        "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local"])
        make_cert(pki, "admin", "meshtop-testenv-admin", org="system:masters", client=True)
        if not os.path.exists(f"{pki}/sa.key"):
            openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{pki}/sa.key")
            openssl("ec", "-in", f"{pki}/sa.key", "-pubout", "-out", f"{pki}/sa.pub")
        write_kubeconfig(c.kubeconfig, [(c.name, f"https://127.0.0.1:{c.ports['apiserver']}", f"{STATE}/pki/ca.crt",
                                         f"{pki}/admin.crt", f"{pki}/admin.key")])
        procs.start(f"kube-apiserver-{c.name}", [
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--etcd-prefix=/registry/{c.name}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={c.ports['apiserver']}",
            f"--tls-cert-file={pki}/apiserver.crt", f"--tls-private-key-file={pki}/apiserver.key",
            f"--client-ca-file={STATE}/pki/ca.crt",
            "--authorization-mode=RBAC",
            f"--service-account-issuer=https://{c.name}.testenv.invalid",
            f"--service-account-key-file={pki}/sa.pub",
            f"--service-account-signing-key-file={pki}/sa.key",
            f"--service-cluster-ip-range={c.svcSubnet}",
            # The apiserver would publish 127.0.0.1 as the `kubernetes` Service endpoint, which
            # EndpointSlice validation rejects (loopback); nothing in the env needs it.
            "--endpoint-reconciler-type=none",
            # Logs/exec/port-forward would go to the node address, which kwok sets to 127.0.0.1.
            "--kubelet-preferred-address-types=InternalIP",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
            *audit_args(c),
        ])
    for c in clusters:
        wait_for(f"kube-apiserver {c.name} /readyz", lambda c=c: (procs.check_alive(f"kube-apiserver-{c.name}"), c.readyz())[1], 120)
    log("API servers ready")
    stages = os.path.join(os.path.dirname(procs.bin), "kwok", "stages.yaml")
    for c in clusters:
        procs.start(f"kube-controller-manager-{c.name}", [
            "kube-controller-manager",
            f"--kubeconfig={c.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            "--controllers=*",
            f"--root-ca-file={STATE}/pki/ca.crt",
            f"--service-account-private-key-file={c.dir}/sa.key",
            "--use-service-account-credentials=false",
            f"--service-cluster-ip-range={c.svcSubnet}",
            # Client rate limits above the defaults (20/30): `up --services/--replicas` creates
            # thousands of pods, which the ReplicaSet controller would otherwise trickle out.
            "--kube-api-qps=200", "--kube-api-burst=400",
            "--v=1",
        ])
        procs.start(f"kube-scheduler-{c.name}", [
            "kube-scheduler", f"--kubeconfig={c.kubeconfig}", "--leader-elect=false", "--secure-port=0",
            "--kube-api-qps=200", "--kube-api-burst=400", "--v=1",
        ])
        extra = []
        if c.revisionPorts:
            # kwok watches PortForward objects (by pod name, checked before the
            # ClusterPortForward): the simulated-sidecars process keeps one per istiod pod of a
            # revision, sending it to that revision's local istiod.
            c.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=meshtop-testenv", "-f",
                      os.path.join(os.path.dirname(stages), "crd-portforwards.yaml"))
            c.kubectl("wait", "--for=condition=Established", "crd/portforwards.kwok.x-k8s.io", "--timeout=60s")
            extra = ["--enable-crds=PortForward"]
        procs.start(f"kwok-{c.name}", [
            "kwok", f"--kubeconfig={c.kubeconfig}", f"--config={kwok_config(c, stages)}", *extra,
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--cidr={c.podSubnet}",
            "--node-ip=127.0.0.1",
            f"--node-port={c.ports['kwok']}",
            f"--server-address=127.0.0.1:{c.ports['kwok']}",
            "--node-lease-duration-seconds=40",
        ])


def kwok_config(c, stages):
    """kwok's stock stages, plus (in a cluster that hosts an istiod) a ClusterPortForward that
    sends a port-forward to an istiod pod's ports to the real local istiod, so the
    `kubectl port-forward`/kube-rs portforward path reaches it: API server -> kwok (the
    node's 127.0.0.1 kubelet port) -> istiod on 127.0.0.1."""
    path = f"{c.dir}/kwok.yaml"
    with open(stages) as f:
        text = f.read()
    if "monitoring" in c.ports:
        pf = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterPortForward",
              "metadata": {"name": "istiod-to-local-istiod"},
              "spec": {"selector": {"matchNamespaces": [SYSTEM_NS]},
                       "forwards": [{"ports": [pod_port], "target": {"address": LOOPBACK, "port": c.ports[k]}}
                                    for pod_port, k in ISTIOD_POD_PORTS]}}
        text += "\n---\n" + yaml.safe_dump(pf, sort_keys=False)
    with open(path, "w") as f:
        f.write(text)
    return path


def seed_nodes_and_namespaces(c):
    docs = []
    for i, zone in enumerate(c.zones):
        docs.append({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": f"{c.name}-node-{i}",
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": f"{c.name}-node-{i}",
                       "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                       "topology.kubernetes.io/region": c.region, "topology.kubernetes.io/zone": zone}}})
    ns = {"apiVersion": "v1", "kind": "Namespace",
          "metadata": {"name": SYSTEM_NS, "labels": {"topology.istio.io/network": c.network}}}
    if c.role == "remote":
        ns["metadata"]["annotations"] = {"topology.istio.io/controlPlaneClusters": c.istiodClusterId}
    docs.append(ns)
    for name, labels in TENANTS:
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    for name in federation_namespaces(c):
        docs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": name, "labels": {"istio-injection": "enabled"}}})
    c.apply(docs)


def istioctl_generate(c, bindir, extra_file=None, revision=None):
    # An external control plane is installed with the clusterName of its config cluster
    # (as Istio's integration framework does: it must match that cluster's remote secret).
    name = c.configCluster if c.role == "external" else c.name
    args = [f"{bindir}/istioctl", "manifest", "generate",
            "--set", f"values.global.meshID={c.meshID}",
            "--set", f"values.global.multiCluster.clusterName={name}",
            "--set", f"values.global.network={c.network}"]
    if extra_file:
        args += ["-f", extra_file]
    elif c.role in ("remote", "config"):
        args += ["--set", "profile=remote",
                 "--set", f"values.istiodRemote.injectionPath=/inject/cluster/{c.name}/net/{c.network}",
                 "--set", f"values.global.remotePilotAddress={c.primary_gateway}"]
        if c.role == "config":
            # The config cluster of an external control plane holds the mesh config and the
            # Istio resources (Istio's external control plane install: configCluster, pilot.configMap).
            args += ["--set", "values.global.configCluster=true", "--set", "values.pilot.configMap=true"]
    else:
        args += ["--set", "values.pilot.env.EXTERNAL_ISTIOD=true"]
    if not extra_file:
        if c.trustDomain != TRUST_DOMAIN:
            args += ["--set", f"meshConfig.trustDomain={c.trustDomain}"]
        if c.federation and c.federation.get("trust"):
            # Federation: the other meshes' roots in meshConfig.caCertificates (an IstioOperator
            # overlay, PEMs do not fit --set) and istiod in multi-root mode, on its Deployment.
            args += ["--set", "values.pilot.env.ISTIO_MULTIROOT_MESH=true", "-f", c.mesh_overlay]
    if revision:
        # As Istio's canary-upgrade docs install a second control plane.
        args += ["--set", f"revision={revision}"]
    out = run(args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def rewrite_webhooks(docs, webhook_port, ca_file=None):
    """Point every admission webhook at the serving istiod's 127.0.0.1 webhook port. ca_file:
    the root of that istiod's serving certificate (the testenv CA, or its mesh's root when it
    runs a plug-in CA and makes its own certificate, as in the federation topology)."""
    ca = b64file(ca_file or f"{STATE}/pki/ca.crt")
    for d in docs:
        if d.get("kind") not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            continue
        for wh in d.get("webhooks") or []:
            cc = wh.get("clientConfig") or {}
            if "service" in cc:
                path = cc["service"].get("path") or "/"
            elif "url" in cc:
                u = cc["url"].split("://", 1)[1]
                path = "/" + u.split("/", 1)[1] if "/" in u else "/"
            else:
                continue
            wh["clientConfig"] = {"url": f"https://127.0.0.1:{webhook_port}{path}", "caBundle": ca}
    return docs


EASTWEST_IOP = """apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata:
  name: eastwest
spec:
  revision: ""
  profile: empty
  components:
    ingressGateways:
      - name: istio-eastwestgateway
        label:
          istio: eastwestgateway
          app: istio-eastwestgateway
          topology.istio.io/network: {network}
        enabled: true
        k8s:
          env:
            - name: ISTIO_META_REQUESTED_NETWORK_VIEW
              value: {network}
          service:
            ports:
              - name: status-port
                port: 15021
                targetPort: 15021
              - name: tls
                port: 15443
                targetPort: 15443
              - name: tls-istiod
                port: 15012
                targetPort: 15012
              - name: tls-webhook
                port: 15017
                targetPort: 15017
  values:
    gateways:
      istio-ingressgateway:
        injectionTemplate: gateway
    global:
      network: {network}
"""
# samples/multicluster/gen-eastwest-gateway.sh (classic mode), expose-istiod.yaml and
# expose-services.yaml of the same Istio revision, inlined.
EXPOSE_ISTIOD = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istiod-gateway, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {name: tls-istiod, number: 15012, protocol: tls}
    tls: {mode: PASSTHROUGH}
    hosts: ["*"]
  - port: {name: tls-istiodwebhook, number: 15017, protocol: tls}
    tls: {mode: PASSTHROUGH}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: istiod-vs, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [istiod-gateway]
  tls:
  - match: [{port: 15012, sniHosts: ["*"]}]
    route: [{destination: {host: istiod.istio-system.svc.cluster.local, port: {number: 15012}}}]
  - match: [{port: 15017, sniHosts: ["*"]}]
    route: [{destination: {host: istiod.istio-system.svc.cluster.local, port: {number: 443}}}]
"""
EXPOSE_SERVICES = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network-gateway, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]
"""


# Mesh-wide mTLS and locality failover for shop/frontend (failover needs outlier detection).
MESH_POLICY = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: frontend, namespace: shop}
spec:
  host: frontend.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        enabled: true
        failover:
        - {from: region1, to: region2}
        - {from: region2, to: region1}
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 10s
      baseEjectionTime: 30s
"""


# ------------------------------------------------------------------------------------------
# multi-mesh federation (topology meta.federation; README, "Federation topology")


def federation_namespaces(c):
    f = c.federation or {}
    return sorted({e["service"].split("/")[0] for e in (f.get("export") or []) + (f.get("import") or [])})


def export_of(src, service):
    for e in (src.federation or {}).get("export") or []:
        if e["service"] == service:
            return {"port": 9080, "serviceAccount": service.split("/")[1], **e}
    die(f"cluster {src.name} exports no {service}")


def write_mesh_overlay(c, clusters):
    """An IstioOperator overlay with meshConfig.caCertificates: the roots of the meshes this
    cluster's mesh trusts, each with that mesh's trust domain."""
    cas = []
    for m in c.federation.get("trust") or []:
        other = [x for x in clusters if x.meshID == m]
        if not other or m == c.meshID:
            die(f"cluster {c.name}: federation.trust names {m}, which is no other mesh of the topology")
        with open(make_mesh_root(m)) as f:
            cas.append({"pem": f.read(), "trustDomains": [other[0].trustDomain]})
    c.mesh_overlay = f"{c.dir}/mesh-overlay.yaml"
    with open(c.mesh_overlay, "w") as f:
        yaml.safe_dump({"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
                        "spec": {"meshConfig": {"caCertificates": cas}}}, f, sort_keys=False)


def cacerts_secret(c):
    d = make_plugin_cacerts(c)
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "cacerts", "namespace": SYSTEM_NS},
            "data": {k: b64file(f"{d}/{k}") for k in ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")}}


def export_docs(c):
    """In an exporting cluster: the exported service (ServiceAccount, Deployment, Service), a
    Gateway on the east-west gateway passing 15443 through for exactly its host, and the
    AuthorizationPolicies admitting the other meshes' principals."""
    f = c.federation or {}
    docs = []
    for e in f.get("export") or []:
        ns, name = e["service"].split("/")
        e = export_of(c, e["service"])
        labels = {"app": name}
        docs.append({"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": e["serviceAccount"], "namespace": ns}})
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
                     "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                              "template": {"metadata": {"labels": {**labels, "version": "v1"}},
                                           "spec": {"serviceAccountName": e["serviceAccount"], "containers": [{
                                               "name": name, "image": f"registry.invalid/meshtop-testenv/{name}:v1",
                                               "ports": [{"containerPort": e["port"], "name": "http"}]}]}}}})
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
                     "spec": {"selector": labels, "ports": [{"name": "http", "port": e["port"], "targetPort": e["port"]}]}})
        docs.append({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                     "metadata": {"name": e.get("gateway") or f"{name}-export", "namespace": SYSTEM_NS},
                     "spec": {"selector": {"istio": "eastwestgateway"},
                              "servers": [{"port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                                           "tls": {"mode": "AUTO_PASSTHROUGH"},
                                           "hosts": [f"{name}.{ns}.svc.cluster.local"]}]}})
    for a in f.get("allow") or []:
        ns, name = a["service"].split("/")
        docs.append({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                     "metadata": {"name": a["policy"], "namespace": ns},
                     "spec": {"selector": {"matchLabels": {"app": name}}, "action": "ALLOW",
                              "rules": [{"from": [{"source": {"principals": a["principals"]}}]}]}})
    return docs


def lb_address(c, svc):
    ing = ((c.get_json("-n", SYSTEM_NS, "svc", svc).get("status") or {}).get("loadBalancer") or {}).get("ingress")
    return ing[0]["ip"] if ing else None


def import_docs(c, by_name):
    """In an importing cluster: a ServiceEntry per imported service, its endpoint the exporting
    cluster's east-west gateway address (read from that Service's status) on 15443, on the
    exporter's network, with the exporter's SPIFFE identity as subjectAltName."""
    docs = []
    for i in (c.federation or {}).get("import") or []:
        src = by_name[i["from"]]
        e = export_of(src, i["service"])
        ns, name = i["service"].split("/")
        addr = lb_address(src, "istio-eastwestgateway")
        if not addr:
            die(f"{src.name}: istio-eastwestgateway has no load-balancer address")
        docs.append({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                     "metadata": {"name": i.get("serviceEntry") or f"{name}-{src.meshID}", "namespace": ns},
                     "spec": {"hosts": [f"{name}.{ns}.svc.cluster.local"], "location": "MESH_INTERNAL",
                              "resolution": "STATIC",
                              "ports": [{"number": e["port"], "name": "http", "protocol": "HTTP"}],
                              "endpoints": [{"address": addr, "ports": {"http": 15443}, "network": src.network,
                                             "labels": {"security.istio.io/tlsMode": "istio"}}],
                              "subjectAltNames": [f"spiffe://{src.trustDomain}/ns/{ns}/sa/{e['serviceAccount']}"]}})
    return docs


def mesh_root_pem(mesh_id):
    with open(make_mesh_root(mesh_id)) as f:
        return f.read()


def federation_ready(clusters, by_name):
    """Every cluster's istio-system/istio-ca-root-cert holds its mesh's root (istiod's namespace
    controller writes it), and every istiod's /debug/mesh has the imported roots."""
    for c in clusters:
        cm = c.get_json("-n", SYSTEM_NS, "configmap", "istio-ca-root-cert")
        if cert_info(cm["data"]["root-cert.pem"])["sha256"] != cert_info(mesh_root_pem(c.meshID))["sha256"]:
            return False
    for c in clusters:
        if c.role not in ("primary", "external") or not c.federation:
            continue
        mesh = json.loads(http_get(f"http://127.0.0.1:{c.ports['monitoring']}/debug/mesh")[1])
        have = {(x.get("pem") or "").strip() for x in mesh.get("caCertificates") or []}
        if not {mesh_root_pem(m).strip() for m in c.federation.get("trust") or []} <= have:
            return False
    return True


def federation_description(clusters, by_name):
    """federation.json: the meshes (roots, imported roots), exports, imports and policies, read
    back from the API servers (and the roots' PEM files, by openssl)."""
    out = {"meshes": [], "exports": [], "imports": [], "policies": []}
    for m in dict.fromkeys(c.meshID for c in clusters):
        members = [c for c in clusters if c.meshID == m]
        cp = next(c for c in members if c.role in ("primary", "external"))
        reader = by_name[cp.configCluster]
        mc = yaml.safe_load(reader.get_json("-n", SYSTEM_NS, "configmap", "istio")["data"]["mesh"]) or {}
        dep = cp.get_json("-n", SYSTEM_NS, "deployment", "istiod")
        env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0].get("env") or []}
        out["meshes"].append({
            "id": m, "trustDomain": mc.get("trustDomain") or TRUST_DOMAIN,
            "trustDomainAliases": mc.get("trustDomainAliases") or [],
            "clusters": [c.name for c in members],
            "multiRoot": env.get("ISTIO_MULTIROOT_MESH") == "true",
            "root": cert_info(mesh_root_pem(m)),
            "caCertificates": [{"sha256": cert_info(x["pem"])["sha256"], "trustDomains": x.get("trustDomains") or []}
                               for x in mc.get("caCertificates") or [] if x.get("pem")],
        })
    for c in clusters:
        f = c.federation or {}
        for e in f.get("export") or []:
            ns, name = e["service"].split("/")
            gw = c.get_json("-n", SYSTEM_NS, "gateways.networking.istio.io", e.get("gateway") or f"{name}-export")
            srv = gw["spec"]["servers"][0]
            out["exports"].append({"mesh": c.meshID, "cluster": c.name,
                                   "gateway": f"{SYSTEM_NS}/{gw['metadata']['name']}", "hosts": srv["hosts"],
                                   "port": srv["port"]["number"], "mode": srv["tls"]["mode"],
                                   "address": lb_address(c, "istio-eastwestgateway")})
        for i in f.get("import") or []:
            ns, name = i["service"].split("/")
            src = by_name[i["from"]]
            se = c.get_json("-n", ns, "serviceentries.networking.istio.io",
                            i.get("serviceEntry") or f"{name}-{src.meshID}")
            sp = se["spec"]
            out["imports"].append({"mesh": c.meshID, "cluster": c.name,
                                   "serviceEntry": f"{ns}/{se['metadata']['name']}", "hosts": sp["hosts"],
                                   "from": src.meshID, "addresses": [x["address"] for x in sp["endpoints"]],
                                   "port": sp["endpoints"][0]["ports"]["http"], "location": sp["location"],
                                   "subjectAltNames": sp.get("subjectAltNames") or []})
        for a in f.get("allow") or []:
            ns, name = a["service"].split("/")
            ap = c.get_json("-n", ns, "authorizationpolicies.security.istio.io", a["policy"])
            out["policies"].append({"mesh": c.meshID, "cluster": c.name, "policy": f"{ns}/{a['policy']}",
                                    "principals": [p for r in ap["spec"].get("rules") or [] for fr in r.get("from") or []
                                                   for p in (fr.get("source") or {}).get("principals") or []]})
    return out


def tenant_docs(c, knobs):
    docs = []
    for ns, name, replicas in workloads(knobs):
        labels = {"app": name}
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
                     "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                              "template": {"metadata": {"labels": {**labels, "version": "v1"}},
                                           "spec": {"containers": [{
                                               "name": name, "image": f"registry.invalid/meshtop-testenv/{name}:v1",
                                               "ports": [{"containerPort": 8080, "name": "http"}]}]}}}})
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns,
                                                                           "labels": labels},
                     "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    return docs


def istiod_env_from_deployment(docs, name="istiod"):
    for d in docs:
        if d.get("kind") == "Deployment" and d["metadata"]["name"] == name:
            env = {}
            for e in d["spec"]["template"]["spec"]["containers"][0].get("env", []):
                if "value" in e:
                    env[e["name"]] = str(e["value"])
            return env
    return {}


def up(topology_arg, knobs):
    bindir = bin_dir()
    topo_file, specs = load_topology(topology_arg)
    if os.path.isdir(STATE) and os.listdir(STATE):
        if healthy():
            running = load_state().get("topology")
            same = [c["name"] for c in specs] == [c["name"] for c in load_state()["clusters"]] and all(
                {k: a[k] for k in ("primary", "configCluster", "network")} ==
                {k: b[k] for k in ("primary", "configCluster", "network")}
                for a, b in zip(specs, load_state()["clusters"]))
            if topology_arg and not same:
                log(f"ERROR: an environment with topology {running} is running; run testenv/down first")
                sys.exit(3)
            have = load_state().get("knobs") or {}
            for k, v in knobs.items():
                if have.get(k) != v:
                    log(f"ERROR: the running environment has --{k} {have.get(k)}, not {v}; run testenv/down first")
                    sys.exit(3)
            log("environment already running; reusing it")
            print_summary()
            return
        log("found a stale or partial environment; tearing it down first")
        down(quiet=True)
    os.makedirs(f"{STATE}/pki", exist_ok=True)
    procs = Procs(bindir)
    make_ca(f"{STATE}/pki")

    etcd_port, etcd_peer = free_port(), free_port()
    clusters = [Cluster(s, bindir) for s in specs]
    for c in clusters:
        c.ports = {"apiserver": free_port(), "kwok": free_port()}
        if c.role in ("primary", "external"):
            c.ports.update({k: free_port() for k in ISTIOD_PORTS})
        # One more local istiod per revision (`up --revisions`), with ports of its own.
        c.revisionPorts = {rev: {k: free_port() for k in ISTIOD_PORTS} for rev in revisions_of(c, knobs)}
    by_name = {c.name: c for c in clusters}
    for c in clusters:
        c.primary_gateway = by_name[c.primary].gatewayAddress
    federated = any(c.federation for c in clusters)
    if federated:
        # Federation: every mesh its own root, every cluster a plug-in CA (intermediate) from it.
        missing = [c.name for c in clusters if not c.federation]
        if missing:
            die(f"federation topology: clusters {missing} have no meta.federation")
        for c in clusters:
            os.makedirs(c.dir, exist_ok=True)
            make_plugin_cacerts(c)
        for c in clusters:
            write_mesh_overlay(c, clusters)

    procs.start("etcd", ["etcd", "--name=testenv", f"--data-dir={STATE}/etcd",
                         f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                         f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                         f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                         f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                         f"--initial-cluster=testenv=http://127.0.0.1:{etcd_peer}",
                         "--unsafe-no-fsync", "--log-level=warn"])
    wait_for("etcd /health", lambda: (procs.check_alive("etcd"),
                                      http_get(f"http://127.0.0.1:{etcd_port}/health")[0] == 200)[1], 30)
    log("etcd ready")

    state = {"topology": topo_file, "bin": bindir, "etcd": etcd_port, "knobs": knobs,
             "clusters": [{**s, "ports": c.ports, **({"revisionPorts": c.revisionPorts} if c.revisionPorts else {})}
                          for s, c in zip(specs, clusters)]}
    with open(f"{STATE}/up.json", "w") as f:
        json.dump(state, f, indent=1)

    start_control_planes(procs, clusters, etcd_port, knobs)

    # Generate all Istio manifests (offline, real istioctl) while controllers come up.
    def gen(c):
        docs = istioctl_generate(c, bindir)
        ew = []
        if c.hasGateway:
            iop = f"{c.dir}/eastwest-iop.yaml"
            with open(iop, "w") as f:
                f.write(EASTWEST_IOP.format(network=c.network))
            ew = istioctl_generate(c, bindir, extra_file=iop)
        return c.name, docs, ew

    def gen_rev(c, rev):
        return c.name, rev, istioctl_generate(c, bindir, revision=rev)

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        gen_futs = [ex.submit(gen, c) for c in clusters]
        rev_futs = [ex.submit(gen_rev, c, rev) for c in clusters for rev in c.revisionPorts]
        for c in clusters:
            seed_nodes_and_namespaces(c)
        generated = {}
        for fut in gen_futs:
            name, docs, ew = fut.result()
            generated[name] = (docs, ew)
        # A revision's install, minus what it shares with the default one (CRDs, the ingress
        # gateway and its RBAC, istio-reader-service-account): those stay the default's, so a
        # revision adds only its own objects (istiod-<rev>, istio-<rev>,
        # istio-sidecar-injector-<rev>, its webhooks and RBAC).
        generated_rev = {}
        for fut in rev_futs:
            name, rev, docs = fut.result()
            key = lambda d: (d.get("kind"), d["metadata"].get("namespace"), d["metadata"]["name"])
            have = {key(d) for d in generated[name][0]}
            generated_rev.setdefault(name, {})[rev] = [
                d for d in docs if d.get("kind") != "CustomResourceDefinition" and key(d) not in have]
    log("nodes, namespaces seeded; manifests generated")

    crds = f"{os.path.dirname(bindir)}/istio/crd-all.gen.yaml"
    deferred = {}

    def apply_base(c):
        docs, ew = generated[c.name]
        webhook_port = by_name[c.primary].ports["https"]
        docs = rewrite_webhooks(docs, webhook_port, serving_ca(by_name[c.primary]))
        ew = rewrite_webhooks(ew, webhook_port, serving_ca(by_name[c.primary]))
        if c.federation:
            # Plug-in CA, as Istio's docs install it: Secret istio-system/cacerts (the local
            # istiod reads the same files through ROOT_CA_DIR, the Deployment's /etc/cacerts).
            c.apply([cacerts_secret(c)])
        with open(f"{c.dir}/istio-manifest.yaml", "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
        # CRDs first (their own file, as the base chart ships them), then everything but the
        # workloads; Deployments go after istiod runs so their pods pass the injector.
        c.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=meshtop-testenv", "-f", crds)
        first = [d for d in docs if d.get("kind") != "CustomResourceDefinition" and not (
            d.get("kind") == "Deployment" and d["metadata"]["name"] != "istiod")
            and d.get("kind") not in ("HorizontalPodAutoscaler",)]
        later = [d for d in docs if d not in first and d.get("kind") != "CustomResourceDefinition"] + ew
        c.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        c.apply(first)
        for rev, rdocs in generated_rev.get(c.name, {}).items():
            # Its webhooks go to its own istiod's 127.0.0.1 webhook port. Its istiod Deployment
            # is applied now (kwok runs the pod; istio-system is not injected).
            rdocs = rewrite_webhooks(rdocs, c.revisionPorts[rev]["https"], serving_ca(c))
            with open(f"{c.dir}/istio-manifest-{rev}.yaml", "w") as f:
                yaml.safe_dump_all(rdocs, f, sort_keys=False)
            c.apply([d for d in rdocs if d.get("kind") != "HorizontalPodAutoscaler"])
            later = later + [d for d in rdocs if d.get("kind") == "HorizontalPodAutoscaler"]
        deferred[c.name] = later

    with concurrent.futures.ThreadPoolExecutor(len(clusters)) as ex:
        list(ex.map(apply_base, clusters))
    log("Istio base manifests applied")

    # Remote secrets by the real istioctl, against the testenv API servers: the cluster an
    # istiod reads (its own, or an external control plane's config cluster) gets one for every
    # other data-plane cluster (multi-primary + primary-remote, as Istio's tests do).
    allcfg = f"{STATE}/kubeconfig"
    write_all_kubeconfig(clusters, allcfg)
    hosts = [c for c in clusters if c.role in ("primary", "external")]

    def remote_secret(src):
        out = run([f"{bindir}/istioctl", "create-remote-secret", "--kubeconfig", allcfg, "--context", src.name,
                   "--name", src.name, "--server", f"https://127.0.0.1:{src.ports['apiserver']}"]).stdout
        return src.name, out

    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        secrets = dict(ex.map(remote_secret, [c for c in clusters if c.dataPlane and any(
            h.meshID == c.meshID and h.configCluster != c.name for h in hosts)]))
    for h in hosts:
        reader = by_name[h.configCluster]
        for src in clusters:
            # Only within a mesh: federated meshes do not read each other's clusters.
            if src.dataPlane and src.name != reader.name and src.meshID == reader.meshID:
                reader.apply(secrets[src.name], server_side=False)
    # An external control plane reads its config cluster through Secret istio-kubeconfig in
    # its own cluster (istioctl create-remote-secret --type=config, istiod's service account).
    for h in hosts:
        if h.role != "external":
            continue
        k = by_name[h.configCluster]
        out = run([f"{bindir}/istioctl", "create-remote-secret", "--kubeconfig", allcfg, "--context", k.name,
                   "--name", k.name, "--type=config", f"--namespace={SYSTEM_NS}", "--service-account=istiod",
                   "--create-service-account=false", "--server",
                   f"https://127.0.0.1:{k.ports['apiserver']}"]).stdout
        h.apply(out, server_side=False)
        sec = h.get_json("-n", SYSTEM_NS, "secret", "istio-kubeconfig")
        # What the istiod Deployment mounts at /var/run/secrets/remote/config.
        h.istiod_kubeconfig = f"{h.dir}/istiod-remote-config.kubeconfig"
        with open(h.istiod_kubeconfig, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(base64.b64decode(next(iter(sec["data"].values()))))
    log("remote secrets created")

    # A real istiod per control plane host, as a local process; one more per revision
    # (`up --revisions`) on a primary, with the same cluster kubeconfig (so the same remote
    # secrets: every revision's istiod reads them, as in Istio) and its own ports.
    for c, rev in [(c, None) for c in hosts] + [(c, rev) for c in hosts for rev in c.revisionPorts]:
        svc = f"istiod-{rev}" if rev else "istiod"
        ports = c.revisionPorts[rev] if rev else c.ports
        cert = svc
        if c.federation:
            # Plug-in CA: istiod makes its own serving certificate from it (SANs include
            # ISTIOD_CUSTOM_HOST, so IP 127.0.0.1), with the mesh root as its CA bundle, which
            # its namespace controller publishes as istio-ca-root-cert (as a real one does).
            tls_args = []
        else:
            make_cert(c.dir, cert, f"{svc}.istio-system.svc",
                      sans=[f"DNS:{svc}.istio-system.svc", f"DNS:{svc}.istio-system.svc.cluster.local",
                            "DNS:istiod-remote.istio-system.svc", "DNS:localhost", "IP:127.0.0.1"])
            tls_args = [f"--tlsCertFile={c.dir}/{cert}.crt", f"--tlsKeyFile={c.dir}/{cert}.key",
                        f"--caCertFile={STATE}/pki/ca.crt"]
        idir = f"{c.dir}/{svc}"
        os.makedirs(idir, exist_ok=True)
        env = istiod_env_from_deployment(generated_rev[c.name][rev] if rev else generated[c.name][0], svc)
        kubeconfig = c.kubeconfig
        mesh_file = f"{idir}/mesh-not-used"  # absent: istiod reads ConfigMap istio from its cluster
        if c.role == "external":
            kubeconfig = c.istiod_kubeconfig
            # The files the external istiod Deployment mounts from ConfigMaps of its own cluster.
            mesh_file = f"{idir}/etc/istio/config/mesh"
            for d in generated[c.name][0]:
                if d.get("kind") != "ConfigMap":
                    continue
                target = {"istio": "etc/istio/config", "istio-sidecar-injector": "var/lib/istio/inject"}.get(
                    d["metadata"]["name"])
                if target:
                    os.makedirs(f"{idir}/{target}", exist_ok=True)
                    for k, v in (d.get("data") or {}).items():
                        with open(f"{idir}/{target}/{k}", "w") as f:
                            f.write(v)
            env["SHARED_MESH_CONFIG"] = "istio"
        env.update({
            "CLUSTER_ID": c.configCluster, "POD_NAMESPACE": SYSTEM_NS, "POD_NAME": f"{svc}-testenv-{c.name}",
            "REVISION": rev or "default", "SERVICE_ACCOUNT": svc, "KUBECONFIG": kubeconfig,
            "ISTIOD_CUSTOM_HOST": "localhost,127.0.0.1", "EXTERNAL_ISTIOD": "true",
            "PILOT_CERT_PROVIDER": "istiod",
            "ROOT_CA_DIR": f"{c.dir}/cacerts" if c.federation else f"{idir}/cacerts",
        })
        procs.start(istiod_proc(c.name, rev), [
            "pilot-discovery", "discovery",
            f"--kubeconfig={kubeconfig}", f"--clusterID={c.configCluster}", f"--namespace={SYSTEM_NS}",
            f"--httpAddr=127.0.0.1:{ports['http']}", f"--httpsAddr=127.0.0.1:{ports['https']}",
            f"--grpcAddr=127.0.0.1:{ports['grpc']}", f"--secureGRPCAddr=127.0.0.1:{ports['secureGRPC']}",
            f"--monitoringAddr=127.0.0.1:{ports['monitoring']}",
            *tls_args,
            f"--meshConfig={mesh_file}", f"--networksConfig={idir}/meshNetworks-not-used",
            "--ctrlz_address=127.0.0.1", f"--ctrlz_port={ports['ctrlz']}",
            "--domain=cluster.local", "--keepaliveMaxServerConnectionAge=30m", "--shutdownDuration=1s",
            "--log_output_level=default:info",
        ], env=env, cwd=idir)

    # Gateways, tenants and the rest only now: the injector webhook needs a live istiod.
    for c, rev, ports in istiods(hosts):
        wait_for(f"istiod {istiod_label(c.name, rev)} /ready",
                 lambda c=c, rev=rev, ports=ports: (procs.check_alive(istiod_proc(c.name, rev)), http_get(
                     f"http://127.0.0.1:{ports['http']}/ready")[0] == 200)[1], 120)
    log("istiod ready" + (f" (revisions default, {', '.join(knobs['revisions'])})" if knobs.get("revisions") else ""))
    def apply_rest(c):
        c.apply(deferred[c.name])
        if c.role in ("primary", "config"):
            # Istio resources go to the cluster whose istiod reads them.
            # Federation: no expose-services (hosts *.local) on the east-west gateway; the
            # exporting cluster's own Gateway names exactly what it exports.
            c.apply(list(yaml.safe_load_all(EXPOSE_ISTIOD)) +
                    ([] if c.federation else list(yaml.safe_load_all(EXPOSE_SERVICES))) +
                    list(yaml.safe_load_all(MESH_POLICY)))
        if c.dataPlane:
            # Revision tag by the real istioctl (it copies the injector webhook of the revision).
            tag = run([f"{bindir}/istioctl", "tag", "generate", REVISION_TAG, "--revision", "default",
                       "--kubeconfig", allcfg, "--context", c.name]).stdout
            c.apply(rewrite_webhooks([d for d in yaml.safe_load_all(tag) if d],
                                     by_name[c.primary].ports["https"], serving_ca(by_name[c.primary])))
            c.apply(tenant_docs(c, knobs))
            c.apply(export_docs(c))

    with concurrent.futures.ThreadPoolExecutor(len(clusters)) as ex:
        list(ex.map(apply_rest, clusters))
    for c in clusters:
        if c.hasGateway:
            set_lb_address(c, "istio-eastwestgateway", c.gatewayAddress)
        if c.role in ("primary", "external"):
            set_lb_address(c, "istio-ingressgateway", GATEWAY_ADDR_PREFIX + str(100 + c.index))
    for c in clusters:
        # Imports name the exporter's gateway address, known only now (Service status).
        c.apply(import_docs(c, by_name))
    log("gateways and tenants applied" + (" (federation: exports, imports, policies)" if federated else ""))

    # Simulated sidecars (tools/sidecars): one xDS client per injected pod, each finding its
    # istiod through its own cluster's istiod Service, then through this table (address ->
    # local xDS port) to a 127.0.0.1 port. Started now, they follow the pods as they appear.
    sidecars_cfg = {
        "systemNamespace": SYSTEM_NS,
        "clusters": [{"name": c.name, "kubeconfig": c.kubeconfig, "clusterId": c.name if c.dataPlane
                      else c.configCluster, "network": c.network} for c in clusters],
        # An east-west gateway that exposes an istiod (expose-istiod.yaml) leads to that istiod.
        "addresses": {c.gatewayAddress: f"{LOOPBACK}:{c.ports['grpc']}" for c in hosts if c.hasGateway},
        # An app=istiod pod is the local istiod of its cluster (as kwok's port-forward has it).
        "istiodPods": {c.name: f"{LOOPBACK}:{c.ports['grpc']}" for c in hosts},
    }
    if any(c.revisionPorts for c in hosts):
        # ... of its revision: an istiod-<rev> pod (istio.io/rev=<rev>) stands for that
        # revision's istiod, and the sidecars process keeps a kwok PortForward per such pod.
        sidecars_cfg["istiodRevisionPods"] = {
            c.name: {rev: f"{LOOPBACK}:{p['grpc']}" for rev, p in c.revisionPorts.items()}
            for c in hosts if c.revisionPorts}
        sidecars_cfg["portForwards"] = {
            c.name: [{"revision": rev, "ports": {str(pp): f"{LOOPBACK}:{p[k]}" for pp, k in ISTIOD_POD_PORTS}}
                     for rev, p in c.revisionPorts.items()]
            for c in hosts if c.revisionPorts}
    with open(f"{STATE}/sidecars.json", "w") as f:
        json.dump(sidecars_cfg, f, indent=1)
    procs.start("sidecars", [sidecars_bin(), f"--config={STATE}/sidecars.json"])

    for c in clusters:
        if not c.dataPlane:
            continue
        want = {(ns, name): r for ns, name, r in workloads(knobs)}
        want.update({tuple(e["service"].split("/")): 1 for e in (c.federation or {}).get("export") or []})
        wait_for(f"{c.name}: every tenant Service with its ready endpoints",
                 lambda c=c, w=want: all(ready_endpoints_by_service(c).get(k, 0) >= r for k, r in w.items()),
                 120 + len(want) * 2, 0.5)
    log("EndpointSlices present")
    for c, rev, ports in istiods(hosts):
        want = {x.name for x in clusters if x.dataPlane and x.meshID == c.meshID} | {c.configCluster}
        wait_for(f"istiod {istiod_label(c.name, rev)} /debug/clusterz: {sorted(want)} synced",
                 lambda w=want, ports=ports: w <= synced_clusters(ports), 120, 0.5)
    log("istiod sees every remote cluster as synced")

    if any(c.revisionPorts for c in hosts):
        # kwok's port-forward reaches each revision's istiod pods through the PortForward
        # objects the sidecars process keeps: one per istiod-<rev> pod.
        def port_forwards_present():
            procs.check_alive("sidecars")
            for c in hosts:
                if not c.revisionPorts:
                    continue
                pods = {p["metadata"]["name"] for p in c.get_json("-n", SYSTEM_NS, "pods", "-l", "app=istiod")["items"]
                        if (p["metadata"].get("labels") or {}).get("istio.io/rev") in c.revisionPorts}
                pfs = {p["metadata"]["name"] for p in c.get_json("-n", SYSTEM_NS, "portforwards.kwok.x-k8s.io")["items"]}
                if not pods or not pods <= pfs:
                    return False
            return True
        wait_for("kwok PortForwards for every revision's istiod pods", port_forwards_present, 60, 0.5)
        log("kwok PortForwards for the revisions' istiod pods present")

    # Every injected pod's proxy connected to the istiod that serves its cluster (the istiod of
    # the revision that injected it).
    def proxies_connected():
        procs.check_alive("sidecars")
        want = expected_proxies(clusters, by_name)
        have = {(c.name, rev): {r.get("proxy") for r in syncz(ports)} for c, rev, ports in istiods(hosts)}
        return all(want.get(h, set()) == have[h] for h in have)

    npods = sum(len(v) for v in expected_proxies(clusters, by_name).values())
    wait_for(f"{npods} simulated sidecars in the /debug/syncz of their istiod", proxies_connected, 60 + npods / 10, 0.5)
    log(f"{npods} simulated sidecars connected")

    if federated:
        wait_for("federation: istio-ca-root-cert = the mesh's root in every cluster, imported roots in "
                 "every istiod's /debug/mesh", lambda: federation_ready(clusters, by_name), 60, 0.5)
        with open(f"{STATE}/federation.json", "w") as f:
            json.dump(federation_description(clusters, by_name), f, indent=2)
        log("federation: roots published, federation.json written")

    write_all_kubeconfig(clusters, allcfg)
    urls = {}
    for c in clusters:
        p = by_name[c.primary]
        base = {"controlPlaneCluster": p.name, "role": c.role, "network": c.network,
                "clusterId": p.configCluster, "configCluster": p.configCluster,
                "apiserver": f"https://127.0.0.1:{c.ports['apiserver']}"}
        base.update({
            "debug": f"http://127.0.0.1:{p.ports['monitoring']}",
            "monitoring": f"http://127.0.0.1:{p.ports['monitoring']}",
            "metrics": f"http://127.0.0.1:{p.ports['monitoring']}/metrics",
            "http": f"http://127.0.0.1:{p.ports['http']}",
            "ready": f"http://127.0.0.1:{p.ports['http']}/ready",
            "webhook": f"https://127.0.0.1:{p.ports['https']}",
            "xds": f"127.0.0.1:{p.ports['grpc']}",
            "xdsSecure": f"127.0.0.1:{p.ports['secureGRPC']}",
        })
        if c.revisionPorts:
            # `up --revisions`: the istiod of each other revision installed in this cluster.
            base["revisions"] = {rev: {"service": f"istiod-{rev}", **istiod_urls(rp)}
                                 for rev, rp in c.revisionPorts.items()}
        urls[c.name] = base
    with open(f"{STATE}/istiod.json", "w") as f:
        json.dump(urls, f, indent=2)
    with open(f"{STATE}/ready", "w") as f:
        f.write(f"{time.time() - T0:.1f}\n")
    log(f"up in {time.time() - T0:.1f}s")
    print_summary()


def serving_ca(host):
    """The root of a control plane host's istiod serving certificate (webhook caBundle)."""
    return make_mesh_root(host.meshID) if host.federation else f"{STATE}/pki/ca.crt"


def istiod_proc(cluster, rev):
    """Name of an istiod's pid and log files: istiod-<cluster>, istiod-<cluster>.<revision>."""
    return f"istiod-{cluster}" + (f".{rev}" if rev else "")


def istiod_label(cluster, rev):
    return cluster + (f" (revision {rev})" if rev else "")


def istiods(hosts):
    """(cluster, revision or None for default, ports) of every local istiod."""
    out = [(c, None, c.ports) for c in hosts]
    out += [(c, rev, p) for c in hosts for rev, p in (getattr(c, "revisionPorts", None) or {}).items()]
    return out


def istiod_urls(p):
    return {
        "debug": f"http://127.0.0.1:{p['monitoring']}",
        "monitoring": f"http://127.0.0.1:{p['monitoring']}",
        "metrics": f"http://127.0.0.1:{p['monitoring']}/metrics",
        "http": f"http://127.0.0.1:{p['http']}",
        "ready": f"http://127.0.0.1:{p['http']}/ready",
        "webhook": f"https://127.0.0.1:{p['https']}",
        "xds": f"127.0.0.1:{p['grpc']}",
        "xdsSecure": f"127.0.0.1:{p['secureGRPC']}",
    }


def set_lb_address(c, svc, ip):
    """What a cloud load-balancer controller would do: publish an address in the status."""
    wait_for(f"{c.name} Service {svc}", lambda: c.kubectl("-n", SYSTEM_NS, "get", "svc", svc,
                                                          check=False).returncode == 0, 30)
    c.kubectl("-n", SYSTEM_NS, "patch", "svc", svc, "--subresource=status", "--type=merge", "-p",
              json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}))


def write_all_kubeconfig(clusters, path):
    write_kubeconfig(path, [(c.name, f"https://127.0.0.1:{c.ports['apiserver']}", f"{STATE}/pki/ca.crt",
                             f"{c.dir}/admin.crt", f"{c.dir}/admin.key") for c in clusters])


def ready_endpoints_by_service(c):
    """(namespace, service) -> ready endpoints, from one list of all EndpointSlices."""
    out = {}
    for s in c.get_json("-A", "endpointslices")["items"]:
        svc = (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
        if not svc:
            continue
        k = (s["metadata"]["namespace"], svc)
        out[k] = out.get(k, 0) + sum(1 for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready"))
    return out


def ready_endpoints(c, ns, name):
    j = c.get_json("-n", ns, "endpointslices", "-l", f"kubernetes.io/service-name={name}")
    n = 0
    for s in j["items"]:
        for e in s.get("endpoints") or []:
            if (e.get("conditions") or {}).get("ready"):
                n += 1
    return n


def injected_pods(c):
    """<pod>.<namespace> (as istiod's syncz shows them) -> revision that injected it (from
    sidecar.istio.io/status; None for the default one), for the running injected pods."""
    out = {}
    for p in c.get_json("-A", "pods")["items"]:
        md = p["metadata"]
        status = (md.get("annotations") or {}).get("sidecar.istio.io/status")
        if status is None or md.get("deletionTimestamp"):
            continue
        if (p.get("status") or {}).get("phase") == "Running" and (p.get("status") or {}).get("podIP"):
            try:
                rev = json.loads(status).get("revision")
            except ValueError:
                rev = None
            out[f"{md['name']}.{md['namespace']}"] = None if rev in (None, "", "default") else rev
    return out


def expected_proxies(clusters, by_name):
    """(control plane host, revision or None) -> proxies that istiod must have: the injected
    pods of the clusters it serves that its revision injected."""
    want = {}
    for c in clusters:
        for pod, rev in injected_pods(c).items():
            want.setdefault((by_name[c.primary].name, rev), set()).add(pod)
    return want


def syncz(ports):
    st, body = http_get(f"http://127.0.0.1:{ports['monitoring']}/debug/syncz")
    return json.loads(body) or []


def synced_clusters(ports):
    st, body = http_get(f"http://127.0.0.1:{ports['monitoring']}/debug/clusterz")
    return {x["id"] for x in json.loads(body) if x.get("syncStatus") == "synced"}


# ------------------------------------------------------------------------------------------
# health, summary, down


def load_state():
    with open(f"{STATE}/up.json") as f:
        return json.load(f)


def healthy():
    """True when every process of the recorded environment runs and answers."""
    try:
        st = load_state()
        if not os.path.exists(f"{STATE}/ready"):
            return False
        # An environment from before the simulated sidecars is rebuilt, not reused.
        if not os.path.exists(f"{STATE}/pids/sidecars.pid"):
            return False
        for fn in os.listdir(f"{STATE}/pids"):
            pid, _ = read_pid(f"{STATE}/pids/{fn}")
            if not pid or not pid_alive(pid):
                return False
        for s in st["clusters"]:
            c = Cluster(s, st["bin"])
            c.ports = s["ports"]
            if not c.readyz():
                return False
            if "http" in s["ports"] and http_get(f"http://127.0.0.1:{s['ports']['http']}/ready")[0] != 200:
                return False
            for p in (s.get("revisionPorts") or {}).values():
                if http_get(f"http://127.0.0.1:{p['http']}/ready")[0] != 200:
                    return False
        return True
    except Exception:  # noqa: BLE001
        return False


def print_summary():
    st = load_state()
    with open(f"{STATE}/istiod.json") as f:
        urls = json.load(f)
    print(f"meshtop testenv: {len(st['clusters'])} clusters from {st['topology']}")
    for s in st["clusters"]:
        u = urls[s["name"]]
        ctl = "" if s["role"] == "primary" else f" (control plane: {s['primary']}, cluster id {s['configCluster']})" \
            if s["role"] == "external" else f" (control plane: {s['primary']})"
        print(f"  {s['name']:<24} {s['role']:<8} {s['network']:<10} api {u['apiserver']}  "
              f"istiod debug {u['debug']} ready {u['ready']}{ctl}")
        for rev, r in (u.get("revisions") or {}).items():
            print(f"  {'':<24} {'':<8} {'':<10} revision {rev}: istiod debug {r['debug']} ready {r['ready']}")
    print(f"  istiod URLs per context: {STATE}/istiod.json")
    print(f"  logs: {STATE}/logs   stop: testenv/down")
    print(f"export KUBECONFIG={STATE}/kubeconfig")


def down(quiet=False):
    n = stop_all()
    if os.path.isdir(STATE):
        shutil.rmtree(STATE, ignore_errors=True)
    if not quiet:
        log(f"stopped {n} process(es), removed {STATE}")


def env_cmd():
    if os.path.exists(f"{STATE}/ready") and healthy():
        print(f"export KUBECONFIG={STATE}/kubeconfig")
        return 0
    print("meshtop testenv is not running (start it with testenv/up)", file=sys.stderr)
    return 1


def main():
    args = sys.argv[1:]
    if not args:
        die("usage: testenv.py up [--topology FILE] | down | env")
    cmd = args[0]
    if cmd == "up":
        topo = None
        knobs = {}
        rest = args[1:]
        while rest:
            a = rest.pop(0)
            if a == "--topology" and rest:
                topo = rest.pop(0)
            elif a.startswith("--topology="):
                topo = a.split("=", 1)[1]
            elif a.split("=", 1)[0] in ("--replicas", "--services") and ("=" in a or rest):
                k, v = a.split("=", 1) if "=" in a else (a, rest.pop(0))
                try:
                    knobs[k[2:]] = int(v)
                except ValueError:
                    die(f"{k} wants a number, not {v}")
                if knobs[k[2:]] < 0 or (k == "--replicas" and knobs[k[2:]] < 1):
                    die(f"{k} {v} is out of range")
            elif a.split("=", 1)[0] == "--revisions" and ("=" in a or rest):
                v = a.split("=", 1)[1] if "=" in a else rest.pop(0)
                revs = [r for r in v.split(",") if r]
                for r in revs:
                    # A revision names Kubernetes objects (istiod-<rev>) and a label value.
                    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?", r) or r in ("default", REVISION_TAG):
                        die(f"--revisions: {r!r} is not a usable revision name (lowercase DNS label, "
                            f"not default or the tag {REVISION_TAG})")
                if len(set(revs)) != len(revs):
                    die(f"--revisions {v}: a revision is named twice")
                if revs:
                    knobs["revisions"] = revs
            elif a in ("-h", "--help"):
                print(__doc__)
                return
            else:
                die(f"unknown argument {a}")
        os.makedirs(CACHE_ROOT, exist_ok=True)
        import fcntl
        # One lock per state dir: parallel `up`s of one environment serialise.
        os.makedirs(os.path.dirname(STATE), exist_ok=True)
        lock = open(STATE.rstrip("/") + ".lock", "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            up(topo, knobs)
        except BaseException as e:
            if not (isinstance(e, SystemExit) and e.code in (None, 0, 3)):
                log(f"up failed; state left for inspection (logs in {STATE}/logs); testenv/down cleans up")
            raise
    elif cmd == "down":
        down()
    elif cmd == "env":
        sys.exit(env_cmd())
    else:
        die(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
