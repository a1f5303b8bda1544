//! Where the changes of a plan go. The simulator implements it today; a kube-API writer next.

use std::future::Future;

use super::plan::Change;

/// Applies one change of a plan, the way the API server would (JSON patch with its `test`).
pub trait Writer: Clone + Send + Sync + 'static {
    fn apply(&self, change: &Change) -> impl Future<Output = Result<(), String>> + Send;
}
