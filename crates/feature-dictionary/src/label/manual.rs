//! `manual`: labels written by a person. They are stored with strategy `manual` and
//! confidence 1, always listed first, and automatic labeling never removes them.

use crate::model::FeatureView;
use crate::model::{Feature, Label, LabelingStrategy};

/// Gives `dict` the manual labels `(feature id, text)` of an earlier dictionary of the same
/// features (each feature's in rank order, newest first, as [`crate::store::fdict::FdictReader::manual_labels`]
/// lists them), so rebuilding a dictionary does not lose what a person wrote. Labels of ids
/// `dict` does not hold are skipped. Returns how many labels were kept.
pub fn carry_over(dict: &mut crate::FeatureDictionary, labels: &[(u64, String)]) -> usize {
    let total = dict.feature_set.total_tokens_processed;
    let mut kept = 0;
    // Oldest first, so each feature ends with its newest label first again.
    for (id, text) in labels.iter().rev() {
        if let Some(f) = dict.feature_set.features.get_mut(id) {
            set_manual_label(f, text);
            f.description = super::describe::describe(f, total);
            kept += 1;
        }
    }
    kept
}

/// Manual labels one feature may have. Unbounded, one visitor of the server (or one script
/// running `featdict label --set`) could grow a feature, its page and every write of it
/// without end.
pub const MAX_MANUAL_LABELS: usize = 50;

/// Refuses the manual label `text` on `feature` when it would be one more than
/// [`MAX_MANUAL_LABELS`]; a text the feature already has as a manual label adds none. Every
/// path that adds manual labels (the server, `featdict label --set`) checks here.
pub fn check_room_for(feature: &Feature, text: &str) -> crate::Result<()> {
    let manual = || {
        feature
            .metadata
            .label_details
            .iter()
            .filter(|l| l.strategy == LabelingStrategy::Manual)
    };
    let count = manual().count();
    if count >= MAX_MANUAL_LABELS && !manual().any(|l| l.text == text) {
        return Err(crate::Error::Invalid(format!(
            "feature {} already has {count} manual labels; at most {MAX_MANUAL_LABELS} are kept",
            feature.id
        )));
    }
    Ok(())
}

/// Adds the manual label `text` to `feature` (moving it first if it already exists) and
/// refreshes `labels` / `confidence`. Callers that take labels from people check
/// [`check_room_for`] first.
pub fn set_manual_label(feature: &mut Feature, text: &str) {
    adopt_bare_labels(feature);
    let mut details: Vec<Label> = std::mem::take(&mut feature.metadata.label_details)
        .into_iter()
        .filter(|l| l.text != text)
        .collect();
    details.insert(
        0,
        Label {
            text: text.to_string(),
            strategy: LabelingStrategy::Manual,
            confidence: 1.0,
            precision: None,
            recall: None,
            evidence: vec!["set by hand".into()],
        },
    );
    super::apply(feature, details);
}

/// Removes every manual label of `feature`; returns how many were removed.
pub fn clear_manual_labels(feature: &mut Feature) -> usize {
    remove_manual_labels_where(feature, |_| true)
}

/// Removes the manual label `text` of `feature` (automatic labels stay); returns whether it
/// had one.
pub fn remove_manual_label(feature: &mut Feature, text: &str) -> bool {
    remove_manual_labels_where(feature, |l| l.text == text) > 0
}

/// Removes the manual labels `remove` picks and refreshes `labels` / `confidence`; returns
/// how many were removed.
fn remove_manual_labels_where(feature: &mut Feature, remove: impl Fn(&Label) -> bool) -> usize {
    let removes = |l: &Label| l.strategy == LabelingStrategy::Manual && remove(l);
    if !feature.metadata.label_details.iter().any(removes) {
        // Nothing to remove: the feature stays exactly as it was (an original-library
        // file's bare labels are not given details).
        return 0;
    }
    adopt_bare_labels(feature);
    let before = feature.metadata.label_details.len();
    let details: Vec<Label> = std::mem::take(&mut feature.metadata.label_details)
        .into_iter()
        .filter(|l| !(l.strategy == LabelingStrategy::Manual && remove(l)))
        .collect();
    let removed = before - details.len();
    super::apply(feature, details);
    removed
}

/// Gives every label text without scored details (a file of the original library stores
/// texts only) a detail, so that rewriting `labels` from the details keeps it.
fn adopt_bare_labels(feature: &mut Feature) {
    feature.metadata.label_details = label_details(FeatureView::from(&*feature));
}

/// The feature's scored labels, plus a detail for each label text that has none: the
/// strategy its prefix names and the feature's confidence (the original keeps only the best
/// one).
pub(crate) fn label_details(feature: FeatureView<'_>) -> Vec<Label> {
    let mut details = feature.metadata.label_details.clone();
    for text in feature.labels {
        if details.iter().any(|l| &l.text == text) {
            continue;
        }
        let strategy = match text.split_once(':').map(|(p, _)| p) {
            Some("ngram") => LabelingStrategy::NgramAnalysis,
            Some("pattern") => LabelingStrategy::PatternMatching,
            Some("semantic") => LabelingStrategy::SemanticClustering,
            _ => LabelingStrategy::TokenFrequency,
        };
        details.push(Label {
            text: text.clone(),
            strategy,
            confidence: feature.confidence,
            precision: None,
            recall: None,
            evidence: Vec::new(),
        });
    }
    details
}
