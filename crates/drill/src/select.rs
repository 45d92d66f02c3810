//! Which snapshot a drill restores, and which snapshots its RPO is measured over.

use zaibei_format::{Id, Snapshot};

use crate::DrillError;

/// What to drill: a snapshot by id, or the newest one matching the filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// A snapshot id, a unique prefix of one, or `latest`; `None`: the newest matching the
    /// filters.
    pub snapshot: Option<String>,
    /// Only snapshots of one of these hosts (empty: any).
    pub hosts: Vec<String>,
    /// Only snapshots holding every one of these paths (empty: any).
    pub paths: Vec<String>,
    /// Only snapshots with one of these tags (empty: any). Also narrows the RPO group.
    pub tags: Vec<String>,
}

impl Selection {
    /// True when `s` passes the host, path and tag filters.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && self.tag_matches(s)
            && self
                .paths
                .iter()
                .all(|p| s.paths.iter().any(|sp| sp == p.as_bytes()))
    }

    fn tag_matches(&self, s: &Snapshot) -> bool {
        self.tags.is_empty() || s.tags.iter().any(|t| self.tags.contains(t))
    }

    /// Picks the snapshot to drill from `list` (oldest first). A snapshot named by id must
    /// pass the filters too, so that it always belongs to its own RPO group.
    pub fn pick<'a>(&self, list: &'a [(Id, Snapshot)]) -> Result<&'a (Id, Snapshot), DrillError> {
        let spec = self.snapshot.as_deref().unwrap_or("latest");
        if spec == "latest" {
            return list
                .iter()
                .rev()
                .find(|(_, s)| self.matches(s))
                .ok_or_else(|| {
                    DrillError::NoSnapshot(if self.is_filtered() {
                        "no snapshot matches --host/--path/--tag".into()
                    } else {
                        "the repository has no readable snapshot".into()
                    })
                });
        }
        let prefix = spec.to_ascii_lowercase();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DrillError::NoSnapshot(format!(
                "{spec:?} is not a snapshot id, a prefix of one, or `latest`"
            )));
        }
        let found: Vec<&(Id, Snapshot)> = list
            .iter()
            .filter(|(id, _)| id.to_hex().starts_with(&prefix))
            .collect();
        match found.as_slice() {
            [one] if !self.matches(&one.1) => Err(DrillError::NoSnapshot(format!(
                "snapshot {} does not match --host/--path/--tag",
                one.0.short()
            ))),
            [one] => Ok(one),
            [] => Err(DrillError::NoSnapshot(format!(
                "no readable snapshot has the id {spec}"
            ))),
            _ => Err(DrillError::NoSnapshot(format!(
                "{spec} is the prefix of {} snapshot ids; give more of it",
                found.len()
            ))),
        }
    }

    fn is_filtered(&self) -> bool {
        !(self.hosts.is_empty() && self.paths.is_empty() && self.tags.is_empty())
    }

    /// The snapshots the RPO is measured over: those of the drilled snapshot's host and
    /// paths (as `forget` groups them), narrowed by the tag filter, and always the drilled
    /// snapshot (`drilled_id`) itself. Oldest first.
    pub fn group<'a>(
        &self,
        drilled_id: &Id,
        drilled: &Snapshot,
        list: &'a [(Id, Snapshot)],
    ) -> Vec<&'a (Id, Snapshot)> {
        let key = sorted_paths(drilled);
        list.iter()
            .filter(|(id, s)| {
                id == drilled_id
                    || (s.hostname == drilled.hostname
                        && sorted_paths(s) == key
                        && self.tag_matches(s))
            })
            .collect()
    }
}

fn sorted_paths(s: &Snapshot) -> Vec<&[u8]> {
    let mut p: Vec<&[u8]> = s.paths.iter().map(Vec::as_slice).collect();
    p.sort_unstable();
    p.dedup();
    p
}

#[cfg(test)]
mod tests {
    use zaibei_format::Timestamp;

    use super::*;

    fn snap(host: &str, paths: &[&str], tags: &[&str], secs: i64) -> Snapshot {
        Snapshot {
            time: Timestamp { secs, nanos: 0 },
            tree: Id([secs as u8; 32]),
            paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
            hostname: host.into(),
            username: "root".into(),
            uid: 0,
            gid: 0,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            parent: None,
            program: "test".into(),
            excludes: Vec::new(),
            summary: Default::default(),
            original: None,
        }
    }

    fn list() -> Vec<(Id, Snapshot)> {
        vec![
            (
                Id([0xa1; 32]),
                snap("db", &["/srv", "/etc"], &["nightly"], 10),
            ),
            (Id([0xa2; 32]), snap("web", &["/var/www"], &[], 20)),
            (Id([0xb3; 32]), snap("db", &["/etc", "/srv"], &[], 30)),
            (Id([0xb4; 32]), snap("db", &["/srv"], &["nightly"], 40)),
        ]
    }

    #[test]
    fn picks_the_newest_matching_or_by_prefix() {
        let l = list();
        let all = Selection::default();
        assert_eq!(all.pick(&l).map(|p| p.0).ok(), Some(Id([0xb4; 32])));
        let web = Selection {
            hosts: vec!["web".into()],
            ..Default::default()
        };
        assert_eq!(web.pick(&l).map(|p| p.0).ok(), Some(Id([0xa2; 32])));
        let etc = Selection {
            paths: vec!["/etc".into()],
            ..Default::default()
        };
        assert_eq!(etc.pick(&l).map(|p| p.0).ok(), Some(Id([0xb3; 32])));
        let by_id = Selection {
            snapshot: Some("A1A1".into()),
            ..Default::default()
        };
        assert_eq!(by_id.pick(&l).map(|p| p.0).ok(), Some(Id([0xa1; 32])));
        // A snapshot named by id passes the filters too.
        let tagged = Selection {
            snapshot: Some("b3".into()),
            tags: vec!["nightly".into()],
            ..Default::default()
        };
        assert!(
            matches!(tagged.pick(&l), Err(DrillError::NoSnapshot(m)) if m.contains("does not match")),
        );
        let host = Selection {
            snapshot: Some("b4".into()),
            hosts: vec!["web".into()],
            ..Default::default()
        };
        assert!(host.pick(&l).is_err());
        let fits = Selection {
            snapshot: Some("b4".into()),
            hosts: vec!["db".into()],
            tags: vec!["nightly".into()],
            ..Default::default()
        };
        assert_eq!(fits.pick(&l).map(|p| p.0).ok(), Some(Id([0xb4; 32])));
        for bad in ["a", "zz", "", "c0"] {
            let s = Selection {
                snapshot: Some(bad.into()),
                ..Default::default()
            };
            assert!(s.pick(&l).is_err(), "{bad:?}");
        }
        let none = Selection {
            hosts: vec!["mail".into()],
            ..Default::default()
        };
        assert!(matches!(none.pick(&l), Err(DrillError::NoSnapshot(_))));
        assert!(matches!(all.pick(&[]), Err(DrillError::NoSnapshot(_))));
    }

    #[test]
    fn group_is_host_and_path_set_narrowed_by_tags() {
        let l = list();
        let (drilled_id, drilled) = &l[2];
        let ids = |g: Vec<&(Id, Snapshot)>| g.iter().map(|(id, _)| *id).collect::<Vec<_>>();
        // Same host and the same set of paths in another order.
        assert_eq!(
            ids(Selection::default().group(drilled_id, drilled, &l)),
            [Id([0xa1; 32]), Id([0xb3; 32])]
        );
        let nightly = Selection {
            tags: vec!["nightly".into()],
            ..Default::default()
        };
        // The drilled snapshot (untagged) is always in its own group.
        assert_eq!(
            ids(nightly.group(drilled_id, drilled, &l)),
            [Id([0xa1; 32]), Id([0xb3; 32])]
        );
        let (tagged_id, tagged) = &l[0];
        assert_eq!(ids(nightly.group(tagged_id, tagged, &l)), [Id([0xa1; 32])]);
    }
}
