//! File set operations on the store, shared by the CLI and the API: add or replace a file,
//! remove a file or a set, assign and unassign, list; and [`for_node`], the files one node
//! gets (the boot path's `/boot/{mac}/files` and `files sync`).
//!
//! Each change is one write transaction, checked inside it (a file's path, mode, size and
//! template fields by [`super::core::check_file`]; an assignment's target exists), so a
//! refused change changes nothing.
//!
//! Not here: rendering and precedence (`super::core`), ssh (`crate::exec`).

use super::core::{self, Assignment, Delivered, Fields, FileSet, SetFile};
use crate::admin::{check_name, AdminError};
use crate::store::model::{Group, Image, Lease, LeaseState, Network, Node, RootMode, Setting};
use crate::store::{Reader, Store, Writer};

const KIND: &str = "file set";

fn get_set(w: &Writer<'_, '_>, name: &str) -> Result<FileSet, AdminError> {
    w.get::<FileSet>(name)?.ok_or_else(|| AdminError::Unknown {
        kind: KIND,
        name: name.to_string(),
    })
}

/// All sets, by name.
pub fn list(store: &Store) -> Result<Vec<FileSet>, AdminError> {
    Ok(store.read(|r| r.all::<FileSet>())?)
}

pub fn show(store: &Store, name: &str) -> Result<FileSet, AdminError> {
    store
        .read(|r| r.get::<FileSet>(name))?
        .ok_or_else(|| AdminError::Unknown {
            kind: KIND,
            name: name.to_string(),
        })
}

/// Adds `file` to set `name` (made if new), replacing a file of the same path.
pub fn add_file(store: &Store, name: &str, file: SetFile) -> Result<FileSet, AdminError> {
    check_name(name)?;
    core::check_file(&file)?;
    store.write(|w| {
        let mut set = w.get::<FileSet>(name)?.unwrap_or_else(|| FileSet {
            name: name.to_string(),
            files: Vec::new(),
            assigned: Vec::new(),
        });
        set.files.retain(|f| f.path != file.path);
        if set.files.len() >= core::MAX_FILES_PER_SET {
            return Err(AdminError::BadFileSet {
                name: name.to_string(),
                why: format!("a set holds at most {} files", core::MAX_FILES_PER_SET),
            });
        }
        set.files.push(file.clone());
        set.files.sort_by(|a, b| a.path.cmp(&b.path));
        w.put(&set)?;
        Ok(set)
    })
}

/// Removes file `path` from set `name`, or (`None`) the whole set.
pub fn remove(store: &Store, name: &str, path: Option<&str>) -> Result<(), AdminError> {
    store.write(|w| {
        let mut set = get_set(w, name)?;
        let Some(path) = path else {
            w.delete::<FileSet>(name)?;
            return Ok(());
        };
        let before = set.files.len();
        set.files.retain(|f| f.path != path);
        if set.files.len() == before {
            return Err(AdminError::Unknown {
                kind: "file",
                name: format!("{path} in set {name}"),
            });
        }
        w.put(&set)?;
        Ok(())
    })
}

/// Assigns set `name` to `to` (`on`), or takes the assignment back; returns the set.
pub fn assign(store: &Store, name: &str, to: Assignment, on: bool) -> Result<FileSet, AdminError> {
    store.write(|w| {
        let mut set = get_set(w, name)?;
        if on {
            let exists = match &to {
                Assignment::Image(n) => w.get::<Image>(n)?.is_some(),
                Assignment::Group(n) => w.get::<Group>(n)?.is_some(),
                Assignment::Node(n) => w.get::<Node>(n)?.is_some(),
            };
            if !exists {
                return Err(AdminError::Unknown {
                    kind: to.kind(),
                    name: to.name().to_string(),
                });
            }
            if !set.assigned.contains(&to) {
                set.assigned.push(to);
                set.assigned.sort();
            }
        } else {
            let before = set.assigned.len();
            set.assigned.retain(|a| *a != to);
            if set.assigned.len() == before {
                return Err(AdminError::BadFileSet {
                    name: name.to_string(),
                    why: format!("it is not assigned to {to}"),
                });
            }
        }
        w.put(&set)?;
        Ok(set)
    })
}

/// The template fields of `node`, as the boot path resolves them: its own image, else its
/// group's; its reserved address, else its bound lease; the domain of the network holding
/// that address.
fn fields(r: &Reader<'_>, node: &Node) -> Result<Fields, crate::store::StoreError> {
    let group = match &node.group {
        Some(g) => r.get::<Group>(g)?,
        None => None,
    };
    let image_name = node
        .image
        .clone()
        .or_else(|| group.as_ref().and_then(|g| g.image.clone()));
    let image = match &image_name {
        Some(i) => r.get::<Image>(i)?,
        None => None,
    };
    let ip = match node.ip {
        Some(ip) => Some(ip),
        None => r
            .all::<Lease>()?
            .into_iter()
            .filter(|l| l.mac == node.mac && l.state == LeaseState::Bound)
            .max_by_key(|l| l.expires)
            .map(|l| l.ip),
    };
    let domain = match ip {
        Some(ip) => r
            .all::<Network>()?
            .into_iter()
            .find(|n| n.subnet.contains(ip))
            .and_then(|n| n.domain),
        None => None,
    };
    let root = node.root.or(image.as_ref().map(|i| i.root));
    let pinned = node.image_version.or_else(|| {
        group
            .as_ref()
            .filter(|g| g.image == image_name)
            .and_then(|g| g.image_version)
    });
    let version = pinned.or_else(|| image.as_ref().map(|i| i.latest_version()));
    Ok(Fields {
        node: node.name.clone(),
        ip: ip.map(|i| i.to_string()).unwrap_or_default(),
        mac: node.mac.to_string(),
        group: node.group.clone().unwrap_or_default(),
        image: image_name.unwrap_or_default(),
        domain: domain.unwrap_or_default(),
        root: match root {
            Some(RootMode::Nfs) => "nfs".into(),
            Some(RootMode::Ram) | None => "ram".into(),
        },
        image_version: version.map(|v| v.to_string()).unwrap_or_default(),
    })
}

/// The files `node` gets at boot and from `files sync`: its sets' files rendered, its host
/// key pair (when the pool has a node key), in one read.
pub fn for_node(store: &Store, node: &Node) -> Result<Vec<Delivered>, AdminError> {
    store.read(|r| {
        let fields = fields(r, node)?;
        let sets = r.all::<FileSet>()?;
        let secret = crate::exec::key::secret(r)?;
        let host_key = secret
            .as_deref()
            .map(|s| crate::service::hostkey::derive(s, &node.name));
        let node_key = r
            .get::<Setting>(crate::exec::key::SETTING)?
            .and_then(|s| serde_json::from_value::<crate::exec::key::NodeKey>(s.value).ok())
            .map(|k| k.public);
        Ok(core::effective(
            &sets,
            &fields,
            host_key.as_ref(),
            node_key.as_deref(),
        )?)
    })
}
