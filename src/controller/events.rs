//! Publishing Events.

use kube::runtime::events::{Recorder, Reporter};

/// Where the sync's store-change Events go. kube's Recorder folds an Event into the series of
/// an earlier one of the same object and reason, keeping the earlier note; each sync's batch
/// gets a Recorder of its own, so a later sync's rows (an admin added after the sub-organization
/// was created) are an Event of their own rather than a count on the first one's note. Within
/// a batch, the sync sends one Event per object and reason.
#[derive(Clone)]
pub struct EventSink {
    client: kube::Client,
    reporter: Reporter,
}

impl EventSink {
    /// Events written with `client`, reported as `reporter`.
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self { client, reporter }
    }

    /// A Recorder for one batch.
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.client.clone(), self.reporter.clone())
    }
}

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
