//! Network policies on the command line: the flags `create` and `restore --as` take, and
//! `noid net VM`, which shows a VM's policy or changes parts of it.

use anyhow::{bail, Result};
use noid::netpolicy::{Egress, NetPolicy, Rule};
use noid::v1 as pb;

use crate::output;

/// allow or deny, for `--peers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    Allow,
    Deny,
}

#[derive(clap::Args, Debug, Default)]
pub struct PolicyArgs {
    /// What traffic to destinations no rule names gets [default: the server's]
    #[arg(long, value_name = "allow|deny")]
    pub egress: Option<Egress>,
    /// Let the VM reach CIDR[:PORT[-PORT]] (repeatable), e.g. 198.51.100.0/24:443
    #[arg(long = "allow", value_name = "CIDR[:PORT[-PORT]]")]
    pub allow: Vec<Rule>,
    /// Keep the VM from CIDR[:PORT[-PORT]] (repeatable)
    #[arg(long = "deny", value_name = "CIDR[:PORT[-PORT]]")]
    pub deny: Vec<Rule>,
    /// Whether the VM exchanges traffic with your other VMs [default: allow]
    #[arg(long, value_enum, value_name = "allow|deny")]
    pub peers: Option<Choice>,
}

impl PolicyArgs {
    fn given(&self) -> bool {
        self.egress.is_some()
            || !self.allow.is_empty()
            || !self.deny.is_empty()
            || self.peers.is_some()
    }

    /// The policy to send with a create or a fork; None: the server decides (its default for
    /// a new VM, the source's policy for a fork).
    pub fn to_proto(&self) -> Option<pb::NetworkPolicy> {
        self.given().then(|| {
            to_proto(
                &NetPolicy {
                    egress: self.egress.unwrap_or_default(),
                    allow: self.allow.clone(),
                    deny: self.deny.clone(),
                    isolated: self.peers == Some(Choice::Deny),
                },
                self.egress.is_none(),
            )
        })
    }
}

/// `noid net VM` flags: changes to the VM's current policy.
#[derive(clap::Args, Debug)]
pub struct NetArgs {
    /// The VM [default: the active one]
    pub vm: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Drop these rules (as written in `noid net VM`) from the allow and deny lists
    #[arg(long = "remove", value_name = "CIDR[:PORT[-PORT]]")]
    pub remove: Vec<Rule>,
    /// Drop all allow and deny rules before adding those given
    #[arg(long)]
    pub clear: bool,
}

fn to_proto(p: &NetPolicy, server_default_egress: bool) -> pb::NetworkPolicy {
    let mut proto = p.to_proto();
    if server_default_egress {
        proto.egress = pb::Egress::Unspecified as i32;
    }
    proto
}

/// The policy the server reports.
pub fn from_proto(p: &pb::NetworkPolicy) -> Result<NetPolicy> {
    Ok(NetPolicy::from_proto(p, Egress::Allow)?)
}

/// `noid net`: prints the VM's policy, or applies the changes given and prints the result.
pub async fn run(
    client: &mut noid::client::Client,
    vm: String,
    args: NetArgs,
    json: bool,
) -> Result<()> {
    let current = client
        .get_vm(pb::GetVmRequest { name: vm.clone() })
        .await?
        .into_inner();
    let changing = args.policy.given() || args.clear || !args.remove.is_empty();
    let vm = if changing {
        let Some(p) = current.network_policy.as_ref() else {
            bail!("VM {vm:?} has no network (networking is disabled on the server)");
        };
        let mut policy = from_proto(p)?;
        for r in &args.remove {
            let before = policy.allow.len() + policy.deny.len();
            policy.allow.retain(|x| x != r);
            policy.deny.retain(|x| x != r);
            if policy.allow.len() + policy.deny.len() == before {
                bail!("VM {vm:?} has no rule {r} to remove");
            }
        }
        if args.clear {
            policy.allow.clear();
            policy.deny.clear();
        }
        let a = args.policy;
        if let Some(e) = a.egress {
            policy.egress = e;
        }
        for r in a.allow {
            policy.deny.retain(|x| *x != r);
            if !policy.allow.contains(&r) {
                policy.allow.push(r);
            }
        }
        for r in a.deny {
            policy.allow.retain(|x| *x != r);
            if !policy.deny.contains(&r) {
                policy.deny.push(r);
            }
        }
        if let Some(peers) = a.peers {
            policy.isolated = peers == Choice::Deny;
        }
        client
            .set_network_policy(pb::SetNetworkPolicyRequest {
                vm,
                policy: Some(to_proto(&policy, false)),
            })
            .await?
            .into_inner()
    } else {
        current
    };
    if json {
        output::print_message(&vm);
    } else {
        println!("{}: {}", vm.name, output::policy_summary(&vm));
    }
    Ok(())
}
