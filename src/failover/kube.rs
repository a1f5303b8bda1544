//! The writer for real clusters: every change is a JSON patch (with `test` ops on the old
//! value and the object's resourceVersion) sent to the cluster's API server with field
//! manager `meshtop`; the failover lock is a `coordination.k8s.io` Lease in the cluster's
//! system namespace; pre-flight asks the API server (SelfSubjectAccessReview) whether the
//! user may make every write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions,
};
use kube::{Api, Client};

use super::plan::{Change, Plan};
use super::preflight::{Check, Verdict};
use super::writer::{Lock, Snapshot, Writer};
use crate::topology::clock::rfc3339_now;
use crate::topology::istio::SYSTEM_NAMESPACE;

pub const FIELD_MANAGER: &str = "meshtop";
pub const LEASE_NAME: &str = "meshtop-failover";
pub const ANNOTATION_ATTEMPT: &str = "meshtop.io/attempt";
pub const ANNOTATION_PLAN: &str = "meshtop.io/plan";
/// A lease not renewed for this long is free again (a meshtop that died lets go by itself).
const LEASE_SECONDS: i32 = 30;
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Bound on every request, so a dead API server fails a step instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One cluster the writer may write to.
pub struct Target {
    pub context: String,
    /// Filled by the cluster's own task once its credentials are in hand.
    pub client: crate::sources::kube::connect::ClientSlot,
    /// The kubeconfig user of the context (shown as the lock's holder).
    pub user: String,
}

#[derive(Clone)]
pub struct KubeWriter {
    clusters: Arc<BTreeMap<String, Target>>,
    read_only: bool,
}

fn resource(kind: &str) -> Result<ApiResource, String> {
    Ok(match kind {
        "Namespace" => ApiResource::erase::<Namespace>(&()),
        "Service" => ApiResource::erase::<Service>(&()),
        "EndpointSlice" => ApiResource::erase::<EndpointSlice>(&()),
        "MutatingWebhookConfiguration" => ApiResource::erase::<MutatingWebhookConfiguration>(&()),
        "Deployment" => ApiResource::erase::<Deployment>(&()),
        other => return Err(format!("meshtop does not write {other} objects")),
    })
}

/// What the API server said, in words an operator can act on (never a credential).
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 422 || s.code == 409 => format!(
            "the object changed since it was read (the patch's test failed): {}",
            s.message
        ),
        kube::Error::Api(s) if s.code == 403 => format!("forbidden: {}", s.message),
        kube::Error::Api(s) if s.code == 404 => "not found".to_string(),
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        kube::Error::Auth(_) => "authentication failed (credentials not shown)".to_string(),
        other => crate::sources::kube::short_error(other),
    }
}

async fn bounded<T>(
    what: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, what).await {
        Ok(r) => r.map_err(|e| describe(&e)),
        Err(_) => Err(format!(
            "the API server did not answer within {REQUEST_TIMEOUT:?}"
        )),
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// `user@host pid N`: who holds a lock, readable by the next operator.
fn holder_identity(user: &str) -> String {
    format!(
        "{user}@{} pid {}",
        super::audit::hostname(),
        std::process::id()
    )
}

/// The holder's host and pid, when it is written the way [`holder_identity`] writes it.
fn holder_host_pid(holder: &str) -> Option<(&str, u32)> {
    let (who, pid) = holder.rsplit_once(" pid ")?;
    let host = who.rsplit_once('@')?.1;
    Some((host, pid.parse().ok()?))
}

/// Whether a lease still holds: a holder, renewed less than its duration ago.
fn held(lease: &Lease) -> Option<(String, Timestamp)> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let until = renewed
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(
            spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS) as i64,
        ))
        .ok()?;
    (until > Timestamp::now()).then_some((holder, until))
}

fn lease_attempt(lease: &Lease) -> Option<String> {
    lease
        .metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_ATTEMPT)
        .cloned()
}

fn lease_plan(lease: &Lease) -> String {
    lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_PLAN).cloned())
        .unwrap_or_default()
}

impl KubeWriter {
    pub fn new(targets: Vec<Target>, read_only: bool) -> KubeWriter {
        KubeWriter {
            clusters: Arc::new(
                targets
                    .into_iter()
                    .map(|t| (t.context.clone(), t))
                    .collect(),
            ),
            read_only,
        }
    }

    fn target(&self, context: &str) -> Result<&Target, String> {
        self.clusters
            .get(context)
            .ok_or_else(|| format!("no client for context {context}"))
    }

    fn client(&self, context: &str) -> Result<Client, String> {
        self.target(context)?
            .client
            .get()
            .map_err(|e| format!("{context}: {e}"))
    }

    fn api(&self, change: &Change) -> Result<Api<DynamicObject>, String> {
        let client = self.client(&change.cluster)?;
        let ar = resource(&change.kind)?;
        Ok(match &change.namespace {
            Some(ns) => Api::namespaced_with(client, ns, &ar),
            None => Api::all_with(client, &ar),
        })
    }

    fn leases(&self, context: &str) -> Result<Api<Lease>, String> {
        Ok(Api::namespaced(self.client(context)?, SYSTEM_NAMESPACE))
    }

    /// Asks the API server whether the user may `verb` the object.
    async fn may(
        &self,
        context: &str,
        verb: &str,
        ar: &ApiResource,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<bool, String> {
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client(context)?);
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(ar.group.clone()),
                    resource: Some(ar.plural.clone()),
                    namespace: namespace.map(str::to_string),
                    name: name.map(str::to_string),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = bounded(api.create(&PostParams::default(), &review)).await?;
        Ok(answer.status.map(|s| s.allowed).unwrap_or(false))
    }

    async fn permissions(&self, plan: &Plan) -> Check {
        let mut asked = BTreeSet::new();
        let mut denied = Vec::new();
        let mut count = 0;
        let objects: BTreeSet<(String, Option<String>, String)> = plan
            .changes
            .iter()
            .map(|c| (c.kind.clone(), c.namespace.clone(), c.name.clone()))
            .collect();
        let lease = ApiResource::erase::<Lease>(&());
        let mut questions: Vec<Question> = Vec::new();
        for (kind, ns, name) in &objects {
            let ar = match resource(kind) {
                Ok(ar) => ar,
                Err(e) => return check("writes permitted", Verdict::Fail, e),
            };
            for verb in ["get", "patch"] {
                questions.push(Question {
                    verb,
                    ar: ar.clone(),
                    namespace: ns.clone(),
                    name: Some(name.clone()),
                    label: format!("{verb} {kind} {}", object_name(ns, name)),
                });
            }
        }
        for verb in ["get", "create", "update", "delete"] {
            questions.push(Question {
                verb,
                ar: lease.clone(),
                namespace: Some(SYSTEM_NAMESPACE.into()),
                name: (verb != "create").then(|| LEASE_NAME.to_string()),
                label: format!("{verb} Lease {SYSTEM_NAMESPACE}/{LEASE_NAME}"),
            });
        }
        for q in questions {
            if !asked.insert(q.label.clone()) {
                continue;
            }
            count += 1;
            match self
                .may(
                    &plan.cluster,
                    q.verb,
                    &q.ar,
                    q.namespace.as_deref(),
                    q.name.as_deref(),
                )
                .await
            {
                Ok(true) => {}
                Ok(false) => denied.push(q.label),
                Err(e) => {
                    return check(
                        "writes permitted",
                        Verdict::Fail,
                        format!("cannot ask {}: {e}", plan.cluster),
                    )
                }
            }
        }
        if denied.is_empty() {
            check(
                "writes permitted",
                Verdict::Pass,
                format!(
                    "{} allows all {count} requests (SelfSubjectAccessReview)",
                    self.target(&plan.cluster)
                        .map(|t| t.user.as_str())
                        .unwrap_or("the user")
                ),
            )
        } else {
            check(
                "writes permitted",
                Verdict::Fail,
                format!(
                    "{} may not: {}",
                    self.target(&plan.cluster)
                        .map(|t| t.user.as_str())
                        .unwrap_or("the user"),
                    denied.join(", ")
                ),
            )
        }
    }

    async fn lock_state(&self, plan: &Plan) -> Check {
        let leases = match self.leases(&plan.cluster) {
            Ok(l) => l,
            Err(e) => return check("no other failover", Verdict::Fail, e),
        };
        match bounded(leases.get_opt(LEASE_NAME)).await {
            Ok(None) => check(
                "no other failover",
                Verdict::Pass,
                format!("Lease {SYSTEM_NAMESPACE}/{LEASE_NAME} is free"),
            ),
            Ok(Some(lease)) => match held(&lease) {
                Some((holder, until)) => check(
                    "no other failover",
                    Verdict::Fail,
                    format!(
                        "Lease {SYSTEM_NAMESPACE}/{LEASE_NAME} is held by {holder} ({}) until {}",
                        lease_plan(&lease),
                        until.strftime("%H:%M:%S UTC")
                    ),
                ),
                None => check(
                    "no other failover",
                    Verdict::Pass,
                    format!("Lease {SYSTEM_NAMESPACE}/{LEASE_NAME} has expired: free"),
                ),
            },
            Err(e) => check(
                "no other failover",
                Verdict::Fail,
                format!("cannot read Lease {SYSTEM_NAMESPACE}/{LEASE_NAME}: {e}"),
            ),
        }
    }
}

/// One SelfSubjectAccessReview to send.
struct Question {
    verb: &'static str,
    ar: ApiResource,
    namespace: Option<String>,
    name: Option<String>,
    label: String,
}

fn object_name(ns: &Option<String>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

fn check(name: &str, verdict: Verdict, reason: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        verdict,
        reason: reason.into(),
    }
}

impl Writer for KubeWriter {
    async fn access(&self, plan: &Plan) -> Vec<Check> {
        let (permissions, lock) = tokio::join!(self.permissions(plan), self.lock_state(plan));
        vec![permissions, lock]
    }

    async fn lock(
        &self,
        plan: &Plan,
        attempt: &str,
        resuming: Option<&str>,
    ) -> Result<Lock, String> {
        if self.read_only {
            return Err("--read-only: meshtop writes nothing".into());
        }
        let target = self.target(&plan.cluster)?;
        let leases = self.leases(&plan.cluster)?;
        let holder = holder_identity(&target.user);
        let mut annotations = BTreeMap::new();
        annotations.insert(ANNOTATION_ATTEMPT.to_string(), attempt.to_string());
        annotations.insert(ANNOTATION_PLAN.to_string(), plan.title());
        let fresh = |resource_version: Option<String>| Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.into()),
                namespace: Some(SYSTEM_NAMESPACE.into()),
                annotations: Some(annotations.clone()),
                resource_version,
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.clone()),
                lease_duration_seconds: Some(LEASE_SECONDS),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                ..Default::default()
            }),
        };
        let where_ = format!("Lease {SYSTEM_NAMESPACE}/{LEASE_NAME} in {}", plan.cluster);
        // A take-over races whatever still touches the lease (a renewal the stopped API server
        // queued while the attempt ran): on a conflict, read it again and decide again.
        let mut tries = 0;
        loop {
            tries += 1;
            let Some(lease) = bounded(leases.get_opt(LEASE_NAME)).await? else {
                if let Err(e) = bounded(leases.create(&PostParams::default(), &fresh(None))).await {
                    // Created by another meshtop in the meantime: say who.
                    return Err(match bounded(leases.get_opt(LEASE_NAME)).await {
                        Ok(Some(lease)) => format!(
                            "another failover holds {where_}: {} ({})",
                            lease
                                .spec
                                .as_ref()
                                .and_then(|s| s.holder_identity.clone())
                                .unwrap_or_default(),
                            lease_plan(&lease)
                        ),
                        _ => format!("{where_}: {e}"),
                    });
                }
                break;
            };
            if let Some((other, until)) = held(&lease) {
                // Finishing or reverting an attempt may take over its lock from the
                // process that ran it, when that process is gone from this host (or is
                // this one, whose attempt has ended).
                let own_dead_attempt = resuming.is_some()
                    && lease_attempt(&lease).as_deref() == resuming
                    && holder_host_pid(&other).is_some_and(|(host, pid)| {
                        host == super::audit::hostname()
                            && (!pid_alive(pid) || pid == std::process::id())
                    });
                if !own_dead_attempt {
                    return Err(format!(
                        "another failover holds {where_}: {other} ({}) until {}",
                        lease_plan(&lease),
                        until.strftime("%H:%M:%S UTC")
                    ));
                }
            }
            let rv = lease.metadata.resource_version.clone();
            let replaced = tokio::time::timeout(
                REQUEST_TIMEOUT,
                leases.replace(LEASE_NAME, &PostParams::default(), &fresh(rv)),
            )
            .await;
            match replaced {
                Ok(Ok(_)) => break,
                Ok(Err(kube::Error::Api(s))) if s.code == 409 && tries < 3 => continue,
                Ok(Err(e)) => return Err(format!("{where_} could not be taken: {}", describe(&e))),
                Err(_) => {
                    return Err(format!(
                        "{where_} could not be taken: the API server did not answer within \
                         {REQUEST_TIMEOUT:?}"
                    ))
                }
            }
        }
        let renewer = {
            let leases = leases.clone();
            let holder = holder.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    let patch: json_patch::Patch = match serde_json::from_value(serde_json::json!([
                        {"op": "test", "path": "/spec/holderIdentity", "value": holder},
                        {"op": "replace", "path": "/spec/renewTime", "value": now()},
                    ])) {
                        Ok(p) => p,
                        Err(_) => return,
                    };
                    let params = PatchParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    };
                    if let Err(e) =
                        bounded(leases.patch(LEASE_NAME, &params, &Patch::Json::<()>(patch))).await
                    {
                        tracing::warn!("failover lock not renewed: {e}");
                    }
                }
            })
        };
        let release = {
            let holder = holder.clone();
            Box::pin(async move {
                let Some(lease) = bounded(leases.get_opt(LEASE_NAME)).await? else {
                    return Ok(());
                };
                if lease.spec.as_ref().and_then(|s| s.holder_identity.as_ref()) != Some(&holder) {
                    return Ok(());
                }
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: lease.metadata.resource_version.clone(),
                        uid: lease.metadata.uid.clone(),
                    }),
                    ..Default::default()
                };
                bounded(leases.delete(LEASE_NAME, &params))
                    .await
                    .map(|_| ())
            })
        };
        Ok(Lock::new(holder, renewer, release))
    }

    async fn read(&self, change: &Change) -> Result<Snapshot, String> {
        let api = self.api(change)?;
        let object = bounded(api.get(&change.name)).await?;
        let value = serde_json::to_value(&object).map_err(|e| e.to_string())?;
        Ok(Snapshot::trimmed(value))
    }

    async fn write(&self, change: &Change, before: &Snapshot) -> Result<Snapshot, String> {
        if self.read_only {
            return Err("--read-only: meshtop writes nothing".into());
        }
        let api = self.api(change)?;
        // A Deployment's status moves on its own; the other objects must not have changed
        // since they were read.
        let guard = change.kind != "Deployment";
        let patch = change.patch(&before.0, &rfc3339_now(), guard);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let after = bounded(api.patch(&change.name, &params, &Patch::Json::<()>(patch))).await?;
        let value = serde_json::to_value(&after).map_err(|e| e.to_string())?;
        Ok(Snapshot::trimmed(value))
    }

    async fn rolled_out(&self, change: &Change) -> Result<bool, String> {
        let ns = change.namespace.as_deref().unwrap_or("default");
        let api: Api<Deployment> = Api::namespaced(self.client(&change.cluster)?, ns);
        let d = bounded(api.get(&change.name)).await?;
        let wanted = d.spec.replicas.unwrap_or(1);
        let generation = d.metadata.generation.unwrap_or(0);
        let Some(st) = d.status else {
            return Ok(false);
        };
        Ok(st.observed_generation.unwrap_or(0) >= generation
            && st.updated_replicas.unwrap_or(0) == wanted
            && st.ready_replicas.unwrap_or(0) == wanted
            && st.replicas.unwrap_or(0) == wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_identity_round_trips() {
        let h = holder_identity("admin");
        let (host, pid) = holder_host_pid(&h).unwrap();
        assert_eq!(host, super::super::audit::hostname());
        assert_eq!(pid, std::process::id());
        assert!(pid_alive(pid));
    }

    #[test]
    fn an_expired_lease_is_free() {
        let old = Timestamp::now()
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(120))
            .unwrap();
        let mut lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some("someone@host pid 1".into()),
                lease_duration_seconds: Some(30),
                renew_time: Some(MicroTime(old)),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(held(&lease).is_none());
        lease.spec.as_mut().unwrap().renew_time = Some(now());
        assert_eq!(held(&lease).unwrap().0, "someone@host pid 1");
    }
}
