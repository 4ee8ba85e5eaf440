//! What [`apply`](super::apply) did, layer by layer.

use serde::{Deserialize, Serialize};

use super::Layer;

/// How one layer ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerStatus {
    /// In force.
    Applied,
    /// Nothing to do here (privileges: the process was not root).
    NotNeeded,
    /// Could not be applied, and the plan allowed that.
    Unavailable,
    /// Switched off by the plan.
    Off,
}

impl LayerStatus {
    pub const fn name(self) -> &'static str {
        match self {
            LayerStatus::Applied => "applied",
            LayerStatus::NotNeeded => "not needed",
            LayerStatus::Unavailable => "UNAVAILABLE",
            LayerStatus::Off => "off",
        }
    }
}

/// One layer's line in a [`ConfinementReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerReport {
    pub layer: Layer,
    pub status: LayerStatus,
    /// What was applied (landlock ABI, uid, limits) or why it was not.
    pub detail: Option<String>,
}

/// The confinement of one worker, in layer order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfinementReport {
    pub layers: Vec<LayerReport>,
}

impl ConfinementReport {
    pub(crate) fn new() -> Self {
        Self {
            layers: Layer::ALL
                .iter()
                .map(|&layer| LayerReport {
                    layer,
                    status: LayerStatus::Off,
                    detail: None,
                })
                .collect(),
        }
    }

    pub(crate) fn record(&mut self, layer: Layer, status: LayerStatus, detail: Option<String>) {
        if let Some(entry) = self.layers.iter_mut().find(|l| l.layer == layer) {
            entry.status = status;
            entry.detail = match (entry.detail.take(), detail) {
                (Some(old), Some(new)) => Some(format!("{old}; {new}")),
                (old, new) => new.or(old),
            };
        }
    }

    /// The status of `layer`.
    pub fn status(&self, layer: Layer) -> LayerStatus {
        self.layers
            .iter()
            .find(|l| l.layer == layer)
            .map_or(LayerStatus::Off, |l| l.status)
    }

    /// Some layer the plan asked for could not be applied.
    pub fn is_weak(&self) -> bool {
        self.layers
            .iter()
            .any(|l| l.status == LayerStatus::Unavailable)
    }
}

impl std::fmt::Display for ConfinementReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, l) in self.layers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", l.layer, l.status.name())?;
            if let Some(detail) = &l.detail {
                write!(f, " ({detail})")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_merge_details_and_flag_weakness() {
        let mut report = ConfinementReport::new();
        assert!(!report.is_weak());
        report.record(Layer::Rlimits, LayerStatus::Applied, Some("as=1".into()));
        report.record(
            Layer::Rlimits,
            LayerStatus::Applied,
            Some("nofile=4".into()),
        );
        assert_eq!(report.layers[3].detail.as_deref(), Some("as=1; nofile=4"));
        report.record(
            Layer::Landlock,
            LayerStatus::Unavailable,
            Some("no kernel support".into()),
        );
        assert!(report.is_weak());
        assert_eq!(report.status(Layer::Landlock), LayerStatus::Unavailable);
        assert!(
            report
                .to_string()
                .contains("landlock=UNAVAILABLE (no kernel support)")
        );
    }
}
