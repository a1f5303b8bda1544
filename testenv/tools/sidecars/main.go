// Command sidecars simulates the istio-proxy sidecars of a meshtop test environment: one xDS
// client (Istio's own istio.io/istio/pkg/adsc, the client Istio's tests use) per injected pod
// (a pod carrying the annotation sidecar.istio.io/status), connected as that pod (its name,
// namespace, IP, labels, service account and the ISTIO_META_* environment the injector wrote
// into its istio-proxy container, which includes the cluster id and network).
//
// Each client finds its istiod the way a real sidecar does: the pod's discovery address
// (discoveryAddress in its PROXY_CONFIG, e.g. istiod.istio-system.svc:15012, or
// istiod-<rev>... from its istio.io/rev annotation) names a Service in the pod's own cluster;
// that Service's ExternalName, or the ready endpoints of its EndpointSlices, give the address
// kube-proxy/DNS would send the sidecar to. A table written by testenv/up turns that address
// into the 127.0.0.1 plaintext xDS port of the local istiod behind it: an endpoint that is an
// app=istiod pod of a cluster maps to that cluster's istiod; an east-west gateway address
// (or any other listed address) maps to the istiod it exposes. An address the table does not
// know is logged and never dialed; the dialer refuses anything but 127.0.0.1.
//
// Pods, the Services and the EndpointSlices of the system namespace are watched (client-go
// informers). When a pod appears it gets a client, when it goes away (or its IP changes) the
// client is closed, and when the address behind its discovery Service changes (a failover
// repointing a remote cluster to another primary) its client is closed and reconnected to
// the new istiod.
//
// With `testenv/up --revisions` it also maps the app=istiod pods of another revision (label
// istio.io/rev=<rev>, behind Service istiod-<rev>) to that revision's local istiod, and keeps a
// kwok PortForward object per such pod (kwok's ClusterPortForward cannot tell the pods of two
// istiods in one namespace apart), so that a port-forward to it reaches the right process.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"istio.io/istio/pilot/pkg/model"
	v3 "istio.io/istio/pilot/pkg/xds/v3"
	"istio.io/istio/pkg/adsc"
	"istio.io/istio/pkg/cluster"
	istiolog "istio.io/istio/pkg/log"
	"istio.io/istio/pkg/network"
	"istio.io/istio/pkg/version"
)

// Config is what testenv/up writes (sidecars.json in the state directory).
type Config struct {
	// SystemNamespace holds the istiod Services (istio-system).
	SystemNamespace string `json:"systemNamespace"`
	Clusters        []struct {
		Name       string `json:"name"`
		Kubeconfig string `json:"kubeconfig"`
		// Fallbacks when a pod carries no ISTIO_META_CLUSTER_ID / ISTIO_META_NETWORK.
		ClusterID string `json:"clusterId"`
		Network   string `json:"network"`
	} `json:"clusters"`
	// Address (east-west gateway address, ExternalName host, ...) -> 127.0.0.1:<xds port>.
	Addresses map[string]string `json:"addresses"`
	// Cluster name -> 127.0.0.1:<xds port> of the local istiod that its app=istiod pods stand for.
	IstiodPods map[string]string `json:"istiodPods"`
	// Cluster name -> revision -> 127.0.0.1:<xds port> of the local istiod of that revision
	// (testenv/up --revisions): an app=istiod pod labelled istio.io/rev=<revision> stands for
	// it. Pods of a revision not listed here (other than "default") are not mapped at all.
	IstiodRevisionPods map[string]map[string]string `json:"istiodRevisionPods,omitempty"`
	// Cluster name -> kwok PortForward objects to keep (testenv/up --revisions): kwok's
	// ClusterPortForward selects pods by namespace and name only, so every app=istiod pod of
	// a revision gets a PortForward named after it (kwok checks those first) sending its ports
	// to that revision's local istiod. Created when such a pod appears, deleted when it goes.
	PortForwards map[string][]PortForwardRule `json:"portForwards,omitempty"`
}

// PortForwardRule: the app=istiod pods of the system namespace labelled istio.io/rev=Revision
// get a kwok PortForward sending each pod port (the map key) to a 127.0.0.1 address.
type PortForwardRule struct {
	Revision string            `json:"revision"`
	Ports    map[string]string `json:"ports"`
}

var (
	logMu   sync.Mutex
	verbose bool
)

func logf(format string, args ...any) {
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(os.Stdout, "%s %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), fmt.Sprintf(format, args...))
}

// Counters for the periodic summary line.
var (
	nClients   atomic.Int64 // clients alive (dialing or connected)
	nConnected atomic.Int64 // clients that received their first response
)

// connectSlots bounds the clients that are between dialing and their first response, so that
// hundreds of pods appearing at once do not all ask istiod for a full push at the same moment.
var connectSlots = make(chan struct{}, 32)

func main() {
	cfgPath := flag.String("config", "", "sidecars.json written by testenv/up")
	flag.BoolVar(&verbose, "v", false, "log every connect and disconnect")
	flag.Parse()
	if *cfgPath == "" {
		fmt.Fprintln(os.Stderr, "usage: sidecars --config sidecars.json [-v]")
		os.Exit(2)
	}
	// adsc logs every response at info; keep the log readable with hundreds of clients.
	for _, s := range istiolog.Scopes() {
		s.SetOutputLevel(istiolog.WarnLevel)
	}
	raw, err := os.ReadFile(*cfgPath)
	if err != nil {
		logf("reading config: %v", err)
		os.Exit(1)
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		logf("parsing config: %v", err)
		os.Exit(1)
	}
	if cfg.SystemNamespace == "" {
		cfg.SystemNamespace = "istio-system"
	}
	for addr, xds := range cfg.Addresses {
		mustLoopback(addr, xds)
	}
	for c, xds := range cfg.IstiodPods {
		mustLoopback("istiod pods of "+c, xds)
	}
	for c, revs := range cfg.IstiodRevisionPods {
		for rev, xds := range revs {
			mustLoopback("istiod pods of "+c+" revision "+rev, xds)
		}
	}
	for c, rules := range cfg.PortForwards {
		for _, r := range rules {
			for port, to := range r.Ports {
				mustLoopback("port-forward of "+c+" revision "+r.Revision+" port "+port, to)
			}
		}
	}
	logf("sidecars %s (istio %s): %d clusters, address table %v, istiod pods %v",
		version.Info.Version, version.Info.GitRevision, len(cfg.Clusters), cfg.Addresses, cfg.IstiodPods)

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range cfg.Clusters {
		rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			logf("cluster %s: kubeconfig: %v", c.Name, err)
			os.Exit(1)
		}
		if !strings.HasPrefix(rc.Host, "https://127.0.0.1:") {
			logf("cluster %s: refusing API server %s (not 127.0.0.1)", c.Name, rc.Host)
			os.Exit(1)
		}
		rc.QPS, rc.Burst = 50, 100
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			logf("cluster %s: client: %v", c.Name, err)
			os.Exit(1)
		}
		w := &clusterWatch{
			name: c.Name, clusterID: c.ClusterID, network: c.Network, systemNS: cfg.SystemNamespace,
			cfg: &cfg, cs: cs, kick: make(chan struct{}, 1), proxies: map[string]*proxy{},
			unmapped: map[string]bool{},
		}
		if len(cfg.PortForwards[c.Name]) > 0 {
			if w.dyn, err = dynamic.NewForConfig(rc); err != nil {
				logf("cluster %s: dynamic client: %v", c.Name, err)
				os.Exit(1)
			}
		}
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx) }()
	}
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		last := ""
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s := fmt.Sprintf("%d clients, %d connected", nClients.Load(), nConnected.Load())
				if s != last {
					logf("%s", s)
					last = s
				}
			}
		}
	}()
	<-ctx.Done()
	logf("stopping")
	wg.Wait()
	logf("stopped")
}

func mustLoopback(what, hostport string) {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil || host != "127.0.0.1" {
		logf("address table: %s -> %s is not a 127.0.0.1 address", what, hostport)
		os.Exit(1)
	}
}

// loopbackDialer is the only way a client opens a connection: 127.0.0.1 or nothing.
func loopbackDialer(ctx context.Context, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host != "127.0.0.1" {
		return nil, fmt.Errorf("sidecars: refusing to dial %s (only 127.0.0.1)", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// ---------------------------------------------------------------------------------------
// One cluster: informers and the reconcile loop.

type clusterWatch struct {
	name, clusterID, network, systemNS string
	cfg                                *Config
	cs                                 kubernetes.Interface

	pods     cache.Indexer
	services cache.Indexer
	slices   cache.Indexer
	kick     chan struct{}

	proxies  map[string]*proxy // "namespace/name" -> client
	unmapped map[string]bool   // discovery addresses already reported as unmappable

	dyn          dynamic.Interface // for kwok PortForward objects (only with PortForwards rules)
	portForwards map[string]bool   // PortForward names known to exist (nil: not listed yet)
	pfRetry      atomic.Bool       // a retry of a failed PortForward write is scheduled
}

// slimPod keeps what a sidecar needs from a pod (informer memory stays small at scale).
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{}
	out.Name, out.Namespace, out.UID = p.Name, p.Namespace, p.UID
	out.ResourceVersion = p.ResourceVersion
	out.Labels = p.Labels
	out.DeletionTimestamp = p.DeletionTimestamp
	keep := map[string]string{}
	for _, k := range []string{"sidecar.istio.io/status", "istio.io/rev", "inject.istio.io/templates"} {
		if v, ok := p.Annotations[k]; ok {
			keep[k] = v
		}
	}
	out.Annotations = keep
	out.Spec.ServiceAccountName = p.Spec.ServiceAccountName
	out.Spec.NodeName = p.Spec.NodeName
	if _, injected := keep["sidecar.istio.io/status"]; injected {
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			if c.Name != "istio-proxy" {
				continue
			}
			var env []corev1.EnvVar
			for _, e := range c.Env {
				if e.ValueFrom == nil && (strings.HasPrefix(e.Name, "ISTIO_META_") || e.Name == "PROXY_CONFIG") {
					env = append(env, e)
				}
			}
			out.Spec.Containers = []corev1.Container{{Name: c.Name, Env: env}}
		}
	}
	out.Status.Phase = p.Status.Phase
	out.Status.PodIP = p.Status.PodIP
	out.Status.Conditions = nil
	return out, nil
}

func (w *clusterWatch) run(ctx context.Context) {
	all := informers.NewSharedInformerFactory(w.cs, 0)
	sys := informers.NewSharedInformerFactoryWithOptions(w.cs, 0, informers.WithNamespace(w.systemNS))
	podInf := all.Core().V1().Pods().Informer()
	_ = podInf.SetTransform(slimPod)
	svcInf := sys.Core().V1().Services().Informer()
	sliceInf := sys.Discovery().V1().EndpointSlices().Informer()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.poke() },
		UpdateFunc: func(any, any) { w.poke() },
		DeleteFunc: func(any) { w.poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{podInf, svcInf, sliceInf} {
		_, _ = inf.AddEventHandler(h)
	}
	w.pods, w.services, w.slices = podInf.GetIndexer(), svcInf.GetIndexer(), sliceInf.GetIndexer()
	all.Start(ctx.Done())
	sys.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInf.HasSynced, svcInf.HasSynced, sliceInf.HasSynced) {
		w.closeAll()
		return
	}
	logf("cluster %s: informers synced", w.name)
	w.poke()
	for {
		select {
		case <-ctx.Done():
			w.closeAll()
			all.Shutdown()
			sys.Shutdown()
			return
		case <-w.kick:
			// Coalesce bursts (a rollout, a scale) into one pass.
			select {
			case <-ctx.Done():
				continue
			case <-time.After(100 * time.Millisecond):
			}
			select {
			case <-w.kick:
			default:
			}
			w.reconcile()
		}
	}
}

func (w *clusterWatch) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *clusterWatch) closeAll() {
	for k, p := range w.proxies {
		p.stop()
		delete(w.proxies, k)
	}
}

// desired is the client a pod should have right now.
type desired struct {
	pod    *corev1.Pod
	target string // 127.0.0.1:<xds port>
	via    string // the address the discovery Service resolved to
}

func (d desired) fingerprint() string {
	return string(d.pod.UID) + "|" + d.pod.Status.PodIP + "|" + d.target
}

func (w *clusterWatch) reconcile() {
	want := map[string]desired{}
	nowUnmapped := map[string]bool{}
	for _, obj := range w.pods.List() {
		pod := obj.(*corev1.Pod)
		if _, ok := pod.Annotations["sidecar.istio.io/status"]; !ok {
			continue
		}
		if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
			continue
		}
		disc := discoveryAddress(pod, w.systemNS)
		target, via, err := w.resolve(disc)
		if err != nil {
			key := disc + ": " + err.Error()
			nowUnmapped[key] = true
			if !w.unmapped[key] {
				logf("cluster %s: pod %s/%s: discovery address %s: %v; not connecting",
					w.name, pod.Namespace, pod.Name, disc, err)
			}
			continue
		}
		want[pod.Namespace+"/"+pod.Name] = desired{pod: pod, target: target, via: via}
	}
	w.unmapped = nowUnmapped
	w.syncPortForwards()
	for k, p := range w.proxies {
		d, ok := want[k]
		if ok && d.fingerprint() == p.fingerprint {
			continue
		}
		if verbose || ok {
			why := "pod gone"
			if ok {
				why = fmt.Sprintf("now %s via %s", d.target, d.via)
			}
			logf("cluster %s: closing %s (%s -> %s): %s", w.name, k, p.via, p.target, why)
		}
		p.stop()
		delete(w.proxies, k)
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		if _, ok := w.proxies[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		d := want[k]
		p := w.newProxy(d)
		w.proxies[k] = p
		if verbose {
			logf("cluster %s: connecting %s as %s (%s) to %s via %s", w.name, k, p.nodeType, d.pod.Status.PodIP, d.target, d.via)
		}
		go p.run()
	}
}

// discoveryAddress is the xDS address the pod's proxy was configured with by the injector.
func discoveryAddress(pod *corev1.Pod, systemNS string) string {
	for _, c := range pod.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == "PROXY_CONFIG" {
				var pc struct {
					DiscoveryAddress string `json:"discoveryAddress"`
				}
				if json.Unmarshal([]byte(e.Value), &pc) == nil && pc.DiscoveryAddress != "" {
					return pc.DiscoveryAddress
				}
			}
		}
	}
	svc := "istiod"
	if rev := pod.Annotations["istio.io/rev"]; rev != "" && rev != "default" {
		svc += "-" + rev
	}
	return svc + "." + systemNS + ".svc:15012"
}

// resolve turns a discovery address into the local xDS address of the istiod behind it.
func (w *clusterWatch) resolve(disc string) (target, via string, err error) {
	host, _, err := net.SplitHostPort(disc)
	if err != nil {
		host = disc
	}
	if net.ParseIP(host) != nil {
		return w.mapAddress(host)
	}
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	// <svc>.<ns>[.svc[.cluster.local]]
	if len(parts) < 2 || (len(parts) > 2 && parts[2] != "svc") {
		return w.mapAddress(host)
	}
	svcName, ns := parts[0], parts[1]
	if ns != w.systemNS {
		return "", "", fmt.Errorf("namespace %s is not watched (only %s)", ns, w.systemNS)
	}
	obj, ok, _ := w.services.GetByKey(ns + "/" + svcName)
	if !ok {
		return "", "", fmt.Errorf("no Service %s/%s in cluster %s", ns, svcName, w.name)
	}
	svc := obj.(*corev1.Service)
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return w.mapAddress(svc.Spec.ExternalName)
	}
	type cand struct {
		addr string
		pod  string
	}
	var cands []cand
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svcName})
	for _, o := range w.slices.List() {
		s := o.(*discoveryv1.EndpointSlice)
		if s.Namespace != ns || !sel.Matches(labels.Set(s.Labels)) {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			pod := ""
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				pod = ep.TargetRef.Namespace + "/" + ep.TargetRef.Name
				if ep.TargetRef.Namespace == "" {
					pod = s.Namespace + "/" + ep.TargetRef.Name
				}
			}
			for _, a := range ep.Addresses {
				cands = append(cands, cand{a, pod})
			}
		}
	}
	if len(cands) == 0 {
		return "", "", fmt.Errorf("Service %s/%s has no ready endpoint", ns, svcName)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].addr < cands[j].addr })
	var tried []string
	for _, c := range cands {
		if c.pod != "" {
			if obj, ok, _ := w.pods.GetByKey(c.pod); ok && obj.(*corev1.Pod).Labels["app"] == "istiod" {
				if t, ok := w.istiodTarget(obj.(*corev1.Pod)); ok {
					return t, c.addr + " (pod " + c.pod + ")", nil
				}
			}
		}
		if t, v, err := w.mapAddress(c.addr); err == nil {
			return t, v, nil
		}
		tried = append(tried, c.addr)
	}
	return "", "", fmt.Errorf("Service %s/%s endpoints %v are not in the address table", ns, svcName, tried)
}

// istiodTarget is the local istiod an app=istiod pod of this cluster stands for: the one of
// its revision (istio.io/rev) when that is not "default", else the cluster's default istiod.
func (w *clusterWatch) istiodTarget(pod *corev1.Pod) (string, bool) {
	if rev := pod.Labels["istio.io/rev"]; rev != "" && rev != "default" {
		t, ok := w.cfg.IstiodRevisionPods[w.name][rev]
		return t, ok
	}
	t, ok := w.cfg.IstiodPods[w.name]
	return t, ok
}

// ---------------------------------------------------------------------------------------
// kwok PortForward objects for the istiod pods of other revisions.

var portForwardGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "portforwards"}

const managedBy = "meshtop-testenv-sidecars"

// syncPortForwards makes the PortForward objects of the system namespace match the app=istiod
// pods of the revisions in the rules: one per pod, named after it. A failed write is retried.
func (w *clusterWatch) syncPortForwards() {
	rules := w.cfg.PortForwards[w.name]
	if len(rules) == 0 || w.dyn == nil {
		return
	}
	api := w.dyn.Resource(portForwardGVR).Namespace(w.systemNS)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	failed := false
	if w.portForwards == nil {
		l, err := api.List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=" + managedBy})
		if err != nil {
			logf("cluster %s: listing kwok PortForwards: %v", w.name, err)
			w.retryPortForwards()
			return
		}
		w.portForwards = map[string]bool{}
		for _, o := range l.Items {
			w.portForwards[o.GetName()] = true
		}
	}
	want := map[string]PortForwardRule{}
	for _, obj := range w.pods.List() {
		pod := obj.(*corev1.Pod)
		if pod.Namespace != w.systemNS || pod.Labels["app"] != "istiod" {
			continue
		}
		for _, r := range rules {
			if pod.Labels["istio.io/rev"] == r.Revision {
				want[pod.Name] = r
			}
		}
	}
	for name, r := range want {
		if w.portForwards[name] {
			continue
		}
		var forwards []any
		ports := make([]string, 0, len(r.Ports))
		for p := range r.Ports {
			ports = append(ports, p)
		}
		sort.Strings(ports)
		for _, p := range ports {
			host, tp, _ := net.SplitHostPort(r.Ports[p])
			pn, err1 := strconv.Atoi(p)
			tn, err2 := strconv.Atoi(tp)
			if err1 != nil || err2 != nil {
				continue
			}
			forwards = append(forwards, map[string]any{
				"ports":  []any{int64(pn)},
				"target": map[string]any{"address": host, "port": int64(tn)},
			})
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward",
			"metadata": map[string]any{"name": name, "namespace": w.systemNS, "labels": map[string]any{
				"app.kubernetes.io/managed-by": managedBy, "istio.io/rev": r.Revision}},
			"spec": map[string]any{"forwards": forwards},
		}}
		_, err := api.Create(ctx, u, metav1.CreateOptions{FieldManager: managedBy})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			logf("cluster %s: creating kwok PortForward %s/%s: %v", w.name, w.systemNS, name, err)
			failed = true
			continue
		}
		logf("cluster %s: kwok PortForward %s/%s -> revision %s istiod %v", w.name, w.systemNS, name, r.Revision, r.Ports)
		w.portForwards[name] = true
	}
	for name := range w.portForwards {
		if _, ok := want[name]; ok {
			continue
		}
		err := api.Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			logf("cluster %s: deleting kwok PortForward %s/%s: %v", w.name, w.systemNS, name, err)
			failed = true
			continue
		}
		logf("cluster %s: kwok PortForward %s/%s deleted (pod gone)", w.name, w.systemNS, name)
		delete(w.portForwards, name)
	}
	if failed {
		w.retryPortForwards()
	}
}

func (w *clusterWatch) retryPortForwards() {
	if w.pfRetry.Swap(true) {
		return
	}
	time.AfterFunc(2*time.Second, func() {
		w.pfRetry.Store(false)
		w.poke()
	})
}

func (w *clusterWatch) mapAddress(addr string) (string, string, error) {
	if t, ok := w.cfg.Addresses[addr]; ok {
		return t, addr, nil
	}
	return "", "", fmt.Errorf("address %s is not in the address table", addr)
}

// ---------------------------------------------------------------------------------------
// One simulated sidecar.

type proxy struct {
	key, target, via, fingerprint string
	nodeType                      model.NodeType
	cfg                           *adsc.ADSConfig
	done                          chan struct{}
	once                          sync.Once
	first                         chan struct{} // closed by the first response
	firstOnce                     sync.Once
	connected                     atomic.Bool
	mu                            sync.Mutex
	ads                           *adsc.ADSC
}

func (w *clusterWatch) newProxy(d desired) *proxy {
	pod := d.pod
	nodeType := model.SidecarProxy
	if strings.Contains(pod.Annotations["inject.istio.io/templates"], "gateway") {
		nodeType = model.Router
	}
	p := &proxy{
		key: pod.Namespace + "/" + pod.Name, target: d.target, via: d.via, fingerprint: d.fingerprint(),
		nodeType: nodeType, done: make(chan struct{}), first: make(chan struct{}),
	}
	p.cfg = &adsc.ADSConfig{
		Config: adsc.Config{
			ClientName: w.name + "/" + p.key,
			Namespace:  pod.Namespace,
			Workload:   pod.Name,
			IP:         pod.Status.PodIP,
			NodeType:   nodeType,
			Meta:       w.nodeMetadata(pod).ToStruct(),
			GrpcOpts: []grpc.DialOption{
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithContextDialer(loopbackDialer),
			},
		},
		// Like Envoy: clusters first; adsc then follows EDS, LDS and RDS, acking each push.
		InitialDiscoveryRequests: []*discovery.DiscoveryRequest{{TypeUrl: v3.ClusterType}},
		ResponseHandler:          p,
	}
	return p
}

// nodeMetadata is what pilot-agent would send: the ISTIO_META_* variables the injector put
// into the istio-proxy container, plus what the agent reads from the downward API.
func (w *clusterWatch) nodeMetadata(pod *corev1.Pod) model.NodeMetadata {
	env := map[string]string{}
	for _, c := range pod.Spec.Containers {
		for _, e := range c.Env {
			if k, ok := strings.CutPrefix(e.Name, "ISTIO_META_"); ok {
				env[k] = e.Value
			}
		}
	}
	var m model.NodeMetadata
	if b, err := json.Marshal(env); err == nil {
		if err := json.Unmarshal(b, &m); err != nil {
			// Keep going with the typed fields below.
			m = model.NodeMetadata{}
			logf("cluster %s: pod %s/%s: ISTIO_META_* not parsed: %v", w.name, pod.Namespace, pod.Name, err)
		}
	}
	if m.ClusterID == "" {
		m.ClusterID = cluster.ID(w.clusterID)
	}
	if m.Network == "" && w.network != "" {
		m.Network = network.ID(w.network)
	}
	m.Namespace = pod.Namespace
	m.Labels = pod.Labels
	m.InstanceIPs = []string{pod.Status.PodIP}
	m.ServiceAccount = pod.Spec.ServiceAccountName
	m.NodeName = pod.Spec.NodeName
	m.IstioVersion = version.Info.Version
	// The agent sends its ProxyConfig (the injector's PROXY_CONFIG); istiod counts only
	// nodes with one as proxies in its debug views (istioctl proxy-status).
	m.ProxyConfig = &model.NodeMetaProxyConfig{}
	for _, c := range pod.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == "PROXY_CONFIG" {
				var pc model.NodeMetaProxyConfig
				if err := json.Unmarshal([]byte(e.Value), &pc); err == nil {
					m.ProxyConfig = &pc
				} else {
					logf("cluster %s: pod %s/%s: PROXY_CONFIG not parsed: %v", w.name, pod.Namespace, pod.Name, err)
				}
			}
		}
	}
	if rev := pod.Annotations["istio.io/rev"]; rev != "" {
		m.IstioRevision = rev
	}
	return m
}

// HandleResponse is called by adsc for every response on the current stream.
func (p *proxy) HandleResponse(_ *adsc.ADSC, _ *discovery.DiscoveryResponse) {
	p.firstOnce.Do(func() {
		close(p.first)
		if !p.connected.Swap(true) {
			nConnected.Add(1)
		}
	})
}

func (p *proxy) run() {
	nClients.Add(1)
	defer nClients.Add(-1)
	backoff := 200 * time.Millisecond
	for {
		select {
		case connectSlots <- struct{}{}:
		case <-p.done:
			return
		}
		a, err := adsc.New(p.target, p.cfg)
		if err == nil {
			p.mu.Lock()
			select {
			case <-p.done:
				p.mu.Unlock()
				<-connectSlots
				a.Close()
				return
			default:
			}
			p.ads = a
			p.mu.Unlock()
			if err = a.Run(); err == nil {
				p.drain(a)
				return
			}
			<-connectSlots
			a.Close()
			p.mu.Lock()
			p.ads = nil
			p.mu.Unlock()
		} else {
			<-connectSlots
		}
		if verbose {
			logf("%s: connecting to %s: %v (retrying)", p.key, p.target, err)
		}
		select {
		case <-p.done:
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// drain empties adsc's notification channels (nobody else reads them; a full channel would
// pin up to 100 old responses per client) until the client is stopped. adsc itself
// reconnects a broken stream to the same address with backoff.
func (p *proxy) drain(a *adsc.ADSC) {
	slot := true
	release := func() {
		if slot {
			<-connectSlots
			slot = false
		}
	}
	defer release()
	first, deadline := p.first, time.After(10*time.Second)
	for {
		select {
		case <-p.done:
			return
		case <-first:
			release()
			first, deadline = nil, nil
		case <-deadline:
			release()
			first, deadline = nil, nil
		case <-a.Updates:
		case <-a.XDSUpdates:
		}
	}
}

func (p *proxy) stop() {
	p.once.Do(func() {
		p.mu.Lock()
		close(p.done)
		if p.ads != nil {
			p.ads.Close()
		}
		p.mu.Unlock()
		if p.connected.Swap(false) {
			nConnected.Add(-1)
		}
	})
}
