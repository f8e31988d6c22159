//! Unit tests of the core's flows over fakes of its ports (`fakes`): what a failed create
//! undoes, and what reconcile makes of the records and files a crash leaves behind.

mod fakes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fakes::{FakeAgents, FakeVmm};

use super::model::{VmRecord, VmState};
use super::ports::store::{Store, VmStore};
use super::{CoreError, CreateVm, Manager, Parts, User};
use crate::storage::Layout;
use crate::store::SledStore;

struct Rig {
    dir: tempfile::TempDir,
    vmm: Arc<FakeVmm>,
    agent_up: Arc<AtomicBool>,
    store: Arc<SledStore>,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image");
        std::fs::create_dir(&image).unwrap();
        std::fs::write(
            image.join("manifest.json"),
            format!(
                r#"{{"format": {}, "id": "img1", "kernel_release": "6.1"}}"#,
                crate::images::base::IMAGE_FORMAT
            ),
        )
        .unwrap();
        for f in ["vmlinuz", "initrd.img", noid::guest::DISK_FILE] {
            std::fs::write(image.join(f), b"fake").unwrap();
        }
        let layout = Layout::new(&dir.path().join("data"));
        layout.create_dirs().unwrap();
        let store = Arc::new(SledStore::open(&layout.db()).unwrap());
        Rig {
            dir,
            vmm: Arc::default(),
            agent_up: Arc::new(AtomicBool::new(true)),
            store,
        }
    }

    fn layout(&self) -> Layout {
        Layout::new(&self.dir.path().join("data"))
    }

    async fn open(&self) -> Arc<Manager> {
        let limits = super::VmLimits {
            boot_timeout_secs: 1,
            cgroups: false,
            boot_snapshots: false,
            host_memory_reserve_mib: 0,
            disk_reserve_mib: 0,
            ..Default::default()
        };
        Manager::open(Parts {
            limits,
            checkpoints: Default::default(),
            layout: self.layout(),
            images: Arc::new(
                crate::images::ImageStore::open(
                    &self.dir.path().join("images"),
                    crate::images::Base::open(&self.dir.path().join("image")).unwrap(),
                )
                .unwrap(),
            ),
            store: Arc::clone(&self.store) as Arc<dyn Store>,
            vmm: Arc::clone(&self.vmm) as Arc<dyn super::ports::vmm::Vmm>,
            network: None,
            agents: Arc::new(FakeAgents {
                up: Arc::clone(&self.agent_up),
            }),
            net_options: Default::default(),
            quota: Default::default(),
        })
        .await
        .unwrap()
    }

    fn vm_dirs(&self) -> usize {
        std::fs::read_dir(self.layout().vms()).unwrap().count()
    }
}

fn alice() -> User {
    User("alice".into())
}

fn create(name: &str) -> CreateVm {
    CreateVm {
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_create_runs_and_a_delete_leaves_nothing() {
    let rig = Rig::new();
    let core = rig.open().await;
    let vm = core.create_vm(&alice(), create("web")).await.unwrap();
    assert_eq!(vm.state, VmState::Running);
    assert!(rig
        .layout()
        .vm(&vm.id)
        .join(noid::guest::DISK_FILE)
        .is_file());
    assert_eq!(rig.vmm.alive(), 1);
    core.delete_vm(&alice(), "web").await.unwrap();
    assert_eq!((rig.vmm.alive(), rig.vm_dirs()), (0, 0));
    assert!(rig.store.list_vms(None).unwrap().is_empty());
}

#[tokio::test]
async fn a_create_whose_vmm_fails_is_undone() {
    let rig = Rig::new();
    let core = rig.open().await;
    rig.vmm.fail_start.store(true, Ordering::SeqCst);
    let e = core.create_vm(&alice(), create("web")).await.unwrap_err();
    assert!(matches!(e, CoreError::Internal(_)), "{e}");
    assert_eq!((rig.vmm.alive(), rig.vm_dirs()), (0, 0));
    assert!(rig.store.list_vms(None).unwrap().is_empty());
    // The name is free again, and a create that works now takes it.
    rig.vmm.fail_start.store(false, Ordering::SeqCst);
    core.create_vm(&alice(), create("web")).await.unwrap();
}

#[tokio::test]
async fn a_create_whose_guest_never_answers_is_undone_with_its_vmm() {
    let rig = Rig::new();
    let core = rig.open().await;
    rig.agent_up.store(false, Ordering::SeqCst);
    let e = core.create_vm(&alice(), create("web")).await.unwrap_err();
    assert!(matches!(e, CoreError::DeadlineExceeded(_)), "{e}");
    assert_eq!(rig.vmm.starts.load(Ordering::SeqCst), 1);
    assert_eq!(
        (rig.vmm.alive(), rig.vm_dirs()),
        (0, 0),
        "VMM stopped, files gone"
    );
    assert!(rig.store.list_vms(None).unwrap().is_empty());
}

/// A record as a crash in the middle of a flow leaves it.
fn crashed(rig: &Rig, name: &str, state: VmState, running: bool) -> VmRecord {
    let id = format!("{:0>12}", name.len() * 1000 + state as usize);
    let dir = rig.layout().vm(&id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(noid::guest::DISK_FILE), b"disk").unwrap();
    let process = running.then(|| rig.vmm.spawn());
    let vm = VmRecord {
        state,
        process,
        ..VmRecord::for_test(&id, "alice", name)
    };
    rig.store.insert_vm(&vm).unwrap();
    vm
}

#[tokio::test]
async fn reconcile_undoes_creates_finishes_deletes_and_marks_the_dead_stopped() {
    let rig = Rig::new();
    let creating = crashed(&rig, "half-made", VmState::Creating, true);
    let deleting = crashed(&rig, "half-gone", VmState::Deleting, true);
    let dead = crashed(&rig, "dead", VmState::Running, false);
    let alive = crashed(&rig, "alive", VmState::Running, true);
    let orphan = rig.layout().vm("0000deadbeef");
    std::fs::create_dir_all(&orphan).unwrap();

    let core = rig.open().await;
    let names: Vec<(String, VmState)> = rig
        .store
        .list_vms(None)
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.state))
        .collect();
    assert_eq!(
        names,
        [
            ("alive".to_string(), VmState::Running),
            ("dead".to_string(), VmState::Stopped)
        ]
    );
    for gone in [&creating, &deleting] {
        assert!(!rig.layout().vm(&gone.id).exists(), "{}", gone.name);
        assert!(!rig.vmm.is_running_pid(gone.process.unwrap().pid));
    }
    assert!(rig.layout().vm(&dead.id).exists() && rig.layout().vm(&alive.id).exists());
    assert!(!orphan.exists(), "a directory no record owns is removed");
    assert_eq!(rig.vmm.alive(), 1, "only the running VM's VMM is left");
    assert_eq!(
        core.get_vm(&alice(), "alive").unwrap().state,
        VmState::Running
    );
}
