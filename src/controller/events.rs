//! Publishing Events.

use kube::runtime::events::{Recorder, Reporter};

/// Where Events go. kube's Recorder folds an Event into the series of an earlier one of the
/// same object and reason, keeping the earlier note. That suits a repeated failure (the same
/// note again), not news: each sync's batch of store changes, and each Ready change, gets a
/// Recorder of its own ([`EventSink::recorder`]), so a later sync's rows (an admin added after
/// the sub-organization was created) or a second `Synced` with other roles are an Event of
/// their own rather than a count on the first one's note.
#[derive(Clone)]
pub struct EventSink {
    client: kube::Client,
    reporter: Reporter,
    shared: Recorder,
}

impl EventSink {
    /// Events written with `client`, reported as `reporter`.
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        let shared = Recorder::new(client.clone(), reporter.clone());
        Self {
            client,
            reporter,
            shared,
        }
    }

    /// A Recorder for one batch, or one Event that is news.
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.client.clone(), self.reporter.clone())
    }

    /// The Recorder for repeats (a reconcile failing again), folded into a series.
    pub fn repeats(&self) -> &Recorder {
        &self.shared
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
