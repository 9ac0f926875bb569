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
            describe_after_edit(f, total);
            kept += 1;
        }
    }
    kept
}

/// The manual labels `(feature id, text)` of `dict`, each feature's in rank order (newest
/// first), as [`crate::store::fdict::FdictReader::manual_labels`] lists a file's.
pub fn manual_labels_of(dict: &crate::FeatureDictionary) -> Vec<(u64, String)> {
    dict.features()
        .flat_map(|f| {
            f.metadata
                .label_details
                .iter()
                .filter(|l| l.strategy == LabelingStrategy::Manual)
                .map(move |l| (f.id, l.text.clone()))
        })
        .collect()
}

/// What [`carry_over_edits`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarriedEdits {
    /// Labels added on the copy, given to `dict`.
    pub kept: usize,
    /// Labels added on the copy whose features `dict` no longer holds.
    pub dropped: usize,
    /// Labels removed on the copy, removed from `dict` too.
    pub removed: usize,
}

/// Gives `dict` (a newer version of a dictionary) the manual-label edits a person made on a
/// copy of an earlier version — a three-way merge: `base` are the manual labels that copy
/// started with, `edited` those it holds now. Labels added since (in `edited`, not in
/// `base`) are kept as [`carry_over`] keeps them; labels removed since (in `base`, not in
/// `edited`) are removed from `dict` too, where they still are. Labels the copy did not
/// touch are as `dict` has them: a label the newer version dropped stays dropped.
pub fn carry_over_edits(
    dict: &mut crate::FeatureDictionary,
    base: &[(u64, String)],
    edited: &[(u64, String)],
) -> CarriedEdits {
    let before: std::collections::HashSet<(u64, &str)> =
        base.iter().map(|(id, t)| (*id, t.as_str())).collect();
    let added: Vec<(u64, String)> = edited
        .iter()
        .filter(|(id, t)| !before.contains(&(*id, t.as_str())))
        .cloned()
        .collect();
    let kept = carry_over(dict, &added);
    let still: std::collections::HashSet<(u64, &str)> =
        edited.iter().map(|(id, t)| (*id, t.as_str())).collect();
    let total = dict.feature_set.total_tokens_processed;
    let mut removed = 0;
    for (id, text) in base {
        if still.contains(&(*id, text.as_str())) {
            continue;
        }
        if let Some(f) = dict.feature_set.features.get_mut(id) {
            if remove_manual_label(f, text) {
                describe_after_edit(f, total);
                removed += 1;
            }
        }
    }
    CarriedEdits {
        kept,
        dropped: added.len() - kept,
        removed,
    }
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
    let bare = bare_labels(feature, text);
    keep_bare_confidence(feature);
    let (same_text, mut details): (Vec<Label>, Vec<Label>) =
        std::mem::take(&mut feature.metadata.label_details)
            .into_iter()
            .partition(|l| l.text == text);
    let mut hidden = hidden_automatic(feature);
    for l in same_text {
        if l.strategy != LabelingStrategy::Manual {
            hidden.retain(|h| h.text != l.text);
            hidden.push(l);
        }
    }
    set_hidden_automatic(feature, hidden);
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
    apply_keeping_bare(feature, details, bare);
}

/// Where a feature keeps the automatic labels that a manual label of the same text hides
/// (a JSON list of labels): a label has one entry per text, so the manual one replaces the
/// automatic one, and removing the manual label brings the automatic one back with its
/// strategy and scores. Labeling refreshes the list.
pub const AUTOMATIC_UNDER_MANUAL_KEY: &str = "automatic_labels_under_manual";

/// The automatic labels hidden under manual ones of `feature` (see
/// [`AUTOMATIC_UNDER_MANUAL_KEY`]); an entry that is not a label is dropped.
fn hidden_automatic(feature: &Feature) -> Vec<Label> {
    // Entry by entry: the list is written back after an edit, and a whole-list parse would
    // lose every good label for one bad entry.
    let Some(serde_json::Value::Array(entries)) =
        feature.metadata.extra.get(AUTOMATIC_UNDER_MANUAL_KEY)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| serde_json::from_value(e.clone()).ok())
        .collect()
}

/// Stores `hidden` as the automatic labels under manual ones of `feature` (the key is
/// removed when there are none).
pub(crate) fn set_hidden_automatic(feature: &mut Feature, hidden: Vec<Label>) {
    let extra = &mut feature.metadata.extra;
    if hidden.is_empty() {
        extra.remove(AUTOMATIC_UNDER_MANUAL_KEY);
    } else if let Ok(v) = serde_json::to_value(&hidden) {
        extra.insert(AUTOMATIC_UNDER_MANUAL_KEY.into(), v);
    }
}

/// Where a feature whose labels were all bare (a file of the original library) keeps their
/// confidence and its description, `{"confidence", "description"}`, while a manual label is
/// first: removing that label gives both back.
pub const BARE_LABELS_KEY: &str = "bare_labels_before_manual";

/// The label texts of `feature` without scored details (a file of the original library
/// stores texts only), except `but`: they stay as they are, with no made-up strategy or
/// scores, through manual edits.
fn bare_labels(feature: &Feature, but: &str) -> Vec<String> {
    let details = &feature.metadata.label_details;
    feature
        .labels
        .iter()
        .filter(|t| t.as_str() != but && !details.iter().any(|l| &l.text == *t))
        .cloned()
        .collect()
}

/// Keeps aside the confidence (the original library's one number) and the description of
/// a feature whose labels are all bare, before a manual label comes first:
/// [`apply_keeping_bare`] and [`describe_after_edit`] give them back when only bare labels
/// are left.
fn keep_bare_confidence(feature: &mut Feature) {
    let extra = &mut feature.metadata.extra;
    if feature.metadata.label_details.is_empty()
        && !feature.labels.is_empty()
        && !extra.contains_key(BARE_LABELS_KEY)
    {
        extra.insert(
            BARE_LABELS_KEY.into(),
            serde_json::json!({"confidence": feature.confidence, "description": feature.description}),
        );
    }
}

/// The description of `feature` after a manual label edit: written anew (it names the best
/// labels), or — when only bare labels are left — the one it had before its first manual
/// label.
pub fn describe_after_edit(feature: &mut Feature, total_tokens: u64) {
    let kept = feature.metadata.extra.get(BARE_LABELS_KEY);
    match kept
        .and_then(|k| k.get("description"))
        .and_then(|d| d.as_str())
    {
        Some(d) if feature.metadata.label_details.is_empty() => {
            feature.description = d.to_string();
            feature.metadata.extra.remove(BARE_LABELS_KEY);
        }
        _ => feature.description = super::describe::describe(feature, total_tokens),
    }
}

/// [`super::apply`] of `details`, then the `bare` labels after them (with the confidence
/// [`keep_bare_confidence`] kept, when only they are left).
fn apply_keeping_bare(feature: &mut Feature, details: Vec<Label>, bare: Vec<String>) {
    super::apply(feature, details);
    feature.labels.extend(bare);
    if feature.metadata.label_details.is_empty() && !feature.labels.is_empty() {
        let kept = feature.metadata.extra.get(BARE_LABELS_KEY);
        if let Some(c) = kept
            .and_then(|k| k.get("confidence"))
            .and_then(|c| c.as_f64())
        {
            feature.confidence = c;
        }
    }
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
        // Nothing to remove: the feature stays exactly as it was.
        return 0;
    }
    let bare = bare_labels(feature, "");
    let (gone, mut details): (Vec<Label>, Vec<Label>) =
        std::mem::take(&mut feature.metadata.label_details)
            .into_iter()
            .partition(|l| removes(l));
    // The automatic labels these hid come back, among the automatic ones by confidence.
    let mut hidden = hidden_automatic(feature);
    for l in &gone {
        if let Some(i) = hidden.iter().position(|h| h.text == l.text) {
            let back = hidden.remove(i);
            let at = details
                .iter()
                .position(|d| {
                    d.strategy != LabelingStrategy::Manual && d.confidence < back.confidence
                })
                .unwrap_or(details.len());
            details.insert(at, back);
        }
    }
    set_hidden_automatic(feature, hidden);
    apply_keeping_bare(feature, details, bare);
    gone.len()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LabelingStrategy;

    /// One damaged entry of the hidden list drops that entry only: the list is written back
    /// after every edit, and the good labels were lost with it.
    #[test]
    fn a_bad_hidden_entry_drops_only_itself() {
        let label = |text: &str| Label {
            text: text.into(),
            strategy: LabelingStrategy::TokenFrequency,
            confidence: 0.5,
            precision: Some(0.5),
            recall: Some(0.5),
            evidence: vec![],
        };
        let mut f = Feature::new(0, 4);
        set_hidden_automatic(&mut f, vec![label("token:a"), label("token:b")]);
        let Some(serde_json::Value::Array(entries)) =
            f.metadata.extra.get_mut(AUTOMATIC_UNDER_MANUAL_KEY)
        else {
            panic!("stored as a list");
        };
        entries.insert(1, serde_json::json!({"text": 3}));
        let texts: Vec<String> = hidden_automatic(&f).into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["token:a", "token:b"]);
    }
}
