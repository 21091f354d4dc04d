//! Publishing Events.

use kube::runtime::events::Recorder;

/// Publishes `event` about `reference`. An Event that cannot be written is logged, except in a
/// namespace being deleted or already gone, where the API server refuses every new object and
/// the object the Event is about is going too.
pub async fn publish(
    recorder: &Recorder,
    event: &kube::runtime::events::Event,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) {
    match recorder.publish(event, reference).await {
        Ok(()) => {}
        Err(kube::Error::Api(e))
            if e.code == 403
                && e.details.as_ref().is_some_and(|d| {
                    d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
                }) =>
        {
            tracing::debug!(error = %e, "no Event in a namespace being deleted");
        }
        Err(kube::Error::Api(e))
            if e.code == 404 && e.details.as_ref().is_some_and(|d| d.kind == "namespaces") =>
        {
            tracing::debug!(error = %e, "no Event in a namespace that is gone");
        }
        Err(e) => tracing::warn!(error = %e, "publishing an Event failed"),
    }
}
