//! The closed set of privileges of the platform server and the roles that hold them.
//!
//! Every route of the server declares exactly one [`Privilege`] beside its handler; a caller
//! may use the route only when its role holds that privilege and, on tenant routes, when the
//! tenant in the path is its own (system roles act across tenants, but only with the
//! privileges listed here). The three administrators of 三员分立 hold disjoint sets: the
//! system administrator runs the systems, the security administrator decides who may do what,
//! and the audit administrator reads the audit log — none can do another's job.

use serde::{Deserialize, Serialize};

/// Where a route applies: to the whole platform or to one tenant named in its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// A platform-wide route (tenants, users, security settings, the audit log).
    System,
    /// A route beneath `/tenants/{tenant}/…`: only the tenant's members and system roles.
    Tenant,
}

macro_rules! privileges {
    ($( $(#[doc = $doc:literal])* $name:ident = $code:literal, $scope:ident; )*) => {
        /// A privilege: the right to use the routes that declare it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum Privilege {
            $( $(#[doc = $doc])* $name, )*
        }

        impl Privilege {
            /// Every privilege, in declaration order.
            pub const ALL: &'static [Privilege] = &[ $( Privilege::$name, )* ];

            /// The stable code of the privilege (API, tokens, documentation).
            pub fn code(self) -> &'static str {
                match self { $( Privilege::$name => $code, )* }
            }

            /// Whether the privilege applies platform-wide or within a tenant.
            pub fn scope(self) -> Scope {
                match self { $( Privilege::$name => Scope::$scope, )* }
            }

            /// The privilege with this code.
            pub fn from_code(code: &str) -> Option<Privilege> {
                match code { $( $code => Some(Privilege::$name), )* _ => None }
            }
        }
    };
}

privileges! {
    /// Any authenticated caller: its own account, sessions and API tokens.
    SelfService = "self_service", System;
    /// Read the list of tenants and their quotas and usage.
    TenantRead = "tenant_read", System;
    /// Create and delete tenants, set quotas.
    TenantManage = "tenant_manage", System;
    /// Read user accounts (names, roles, state; never secrets).
    UserRead = "user_read", System;
    /// Create, disable and delete user accounts and reset their passwords.
    UserManage = "user_manage", System;
    /// Give users their role, unlock locked accounts, revoke anyone's tokens.
    RoleAssign = "role_assign", System;
    /// Read the security policy (password rules, lockout, token lifetimes).
    SecurityPolicyRead = "security_policy_read", System;
    /// Change the security policy.
    SecurityPolicyManage = "security_policy_manage", System;
    /// Read the server's settings.
    ConfigRead = "config_read", System;
    /// Change the server's settings.
    ConfigManage = "config_manage", System;
    /// Query the audit log and verify its chain.
    AuditRead = "audit_read", System;
    /// Export the audit log and its signed checkpoints.
    AuditExport = "audit_export", System;
    /// Read a tenant's repositories, their usage and the overview of its protected hosts.
    RepoRead = "repo_read", Tenant;
    /// Create and delete a tenant's repositories.
    RepoManage = "repo_manage", Tenant;
    /// Read objects of a tenant's repository through the repository API.
    RepoDataRead = "repo_data_read", Tenant;
    /// Add new objects to a tenant's repository (append-only tokens hold only this and read).
    RepoDataAppend = "repo_data_append", Tenant;
    /// Delete or replace objects of a tenant's repository (prune, forget).
    RepoDataDelete = "repo_data_delete", Tenant;
    /// Read a tenant's agents.
    AgentRead = "agent_read", Tenant;
    /// Issue registration tokens for agents and remove agents.
    AgentManage = "agent_manage", Tenant;
    /// Read a tenant's backup policies.
    PolicyRead = "policy_read", Tenant;
    /// Create, change and delete a tenant's backup policies.
    PolicyManage = "policy_manage", Tenant;
    /// Read a tenant's jobs and their history.
    JobRead = "job_read", Tenant;
    /// Queue and cancel a tenant's jobs.
    JobManage = "job_manage", Tenant;
    /// What an agent does: pull its jobs, report their progress and results.
    AgentWork = "agent_work", Tenant;
}

/// A role: a named, fixed set of privileges. Every user has exactly one, so no account can
/// combine two administrators' jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 系统管理员: tenants, user accounts, repositories, agents, policies, jobs and settings.
    /// Never the audit log, never who holds which role.
    SystemAdmin,
    /// 安全管理员: roles, unlocking, the security policy, revoking tokens. Never systems.
    SecurityAdmin,
    /// 审计管理员: reads and exports the audit log. Changes nothing.
    AuditAdmin,
    /// A tenant's operator: its repositories (data included), agents, policies and jobs.
    TenantOperator,
    /// A tenant's viewer: reads its repositories' listings, agents, policies and jobs.
    TenantViewer,
    /// A registered agent of a tenant: pulls jobs, reports, and appends to repositories.
    Agent,
}

impl Role {
    /// Every role.
    pub const ALL: &'static [Role] = &[
        Role::SystemAdmin,
        Role::SecurityAdmin,
        Role::AuditAdmin,
        Role::TenantOperator,
        Role::TenantViewer,
        Role::Agent,
    ];

    /// The stable code of the role.
    pub fn code(self) -> &'static str {
        match self {
            Role::SystemAdmin => "system_admin",
            Role::SecurityAdmin => "security_admin",
            Role::AuditAdmin => "audit_admin",
            Role::TenantOperator => "tenant_operator",
            Role::TenantViewer => "tenant_viewer",
            Role::Agent => "agent",
        }
    }

    /// The role with this code.
    pub fn from_code(code: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.code() == code)
    }

    /// Whether holders of the role belong to one tenant (tenant roles) or to the platform.
    pub fn is_tenant_role(self) -> bool {
        matches!(
            self,
            Role::TenantOperator | Role::TenantViewer | Role::Agent
        )
    }

    /// The privileges the role holds.
    pub fn privileges(self) -> &'static [Privilege] {
        use Privilege::*;
        match self {
            Role::SystemAdmin => &[
                SelfService,
                TenantRead,
                TenantManage,
                UserRead,
                UserManage,
                SecurityPolicyRead,
                ConfigRead,
                ConfigManage,
                RepoRead,
                RepoManage,
                AgentRead,
                AgentManage,
                PolicyRead,
                PolicyManage,
                JobRead,
                JobManage,
            ],
            Role::SecurityAdmin => &[
                SelfService,
                TenantRead,
                UserRead,
                RoleAssign,
                SecurityPolicyRead,
                SecurityPolicyManage,
            ],
            Role::AuditAdmin => &[SelfService, AuditRead, AuditExport],
            Role::TenantOperator => &[
                SelfService,
                RepoRead,
                RepoManage,
                RepoDataRead,
                RepoDataAppend,
                RepoDataDelete,
                AgentRead,
                AgentManage,
                PolicyRead,
                PolicyManage,
                JobRead,
                JobManage,
            ],
            Role::TenantViewer => &[SelfService, RepoRead, AgentRead, PolicyRead, JobRead],
            Role::Agent => &[AgentWork, RepoDataRead, RepoDataAppend],
        }
    }

    /// Whether the role holds `privilege`.
    pub fn holds(self, privilege: Privilege) -> bool {
        self.privileges().contains(&privilege)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for p in Privilege::ALL {
            assert_eq!(Privilege::from_code(p.code()), Some(*p));
            assert!(seen.insert(p.code()));
        }
        for r in Role::ALL {
            assert_eq!(Role::from_code(r.code()), Some(*r));
        }
        assert_eq!(Privilege::from_code("root"), None);
    }

    /// 三员分立: the three administrators share nothing but their own account.
    #[test]
    fn administrators_are_separated() {
        let admins = [Role::SystemAdmin, Role::SecurityAdmin, Role::AuditAdmin];
        for a in admins {
            for b in admins {
                if a == b {
                    continue;
                }
                let exclusive: Vec<_> = a
                    .privileges()
                    .iter()
                    .filter(|p| b.holds(**p))
                    .filter(|p| {
                        !matches!(
                            p,
                            Privilege::SelfService
                                | Privilege::TenantRead
                                | Privilege::UserRead
                                | Privilege::SecurityPolicyRead
                        )
                    })
                    .collect();
                assert!(exclusive.is_empty(), "{a:?} and {b:?} share {exclusive:?}");
            }
        }
        assert!(!Role::SystemAdmin.holds(Privilege::AuditRead));
        assert!(!Role::SystemAdmin.holds(Privilege::RoleAssign));
        assert!(!Role::AuditAdmin.holds(Privilege::ConfigManage));
        assert!(!Role::AuditAdmin.holds(Privilege::UserManage));
        assert!(!Role::SecurityAdmin.holds(Privilege::ConfigManage));
        assert!(!Role::SecurityAdmin.holds(Privilege::RepoManage));
    }

    #[test]
    fn agents_cannot_delete_data() {
        assert!(!Role::Agent.holds(Privilege::RepoDataDelete));
        assert!(Role::Agent.holds(Privilege::RepoDataAppend));
    }
}
