//! Nomad's access control, without I/O: the policy language, the token, policy and role
//! types in Nomad's API shapes, the decision engine, and what each `/v1` route demands.
//!
//! The model, as Nomad defines it:
//!
//! - A **policy** is a named document of rules (`namespace "<glob>" { ... }`, `node`,
//!   `agent`, `operator`, `quota`, `plugin`, `host_volume "<glob>"`, `node_pool "<glob>"`)
//!   written in HCL or its JSON form. [`Policy::parse`] is strict: every unknown word is an
//!   error at its `line:column`, and no input makes it panic or recurse without bound.
//!   Coarse dispositions (`policy = "read"`) are expanded into fine-grained capabilities
//!   there ([`capability`]), so everything later works on capability sets.
//! - A **token** is `management` (allowed everything) or `client`, holding policies
//!   directly and through **roles**. [`Acl::from_policies`] merges all of them: rules with
//!   the same name take the union of their capabilities; singleton rules take the largest
//!   grant, except that `deny` always wins.
//! - A **decision** picks the one rule that applies to a name: an exact rule, else the
//!   matching glob that swallowed the fewest characters; `deny` in that rule refuses
//!   everything ([`Acl::allow_namespace_operation`] and friends).
//! - A **route** demands a [`Requirement`] ([`required`]): a capability in the request's
//!   namespace (which the server resolves and passes in), a level of a singleton rule,
//!   management, nothing (status routes), or a per-object filter for lists.
//!
//! The server owns everything with state or I/O: storing tokens and policies, resolving
//! a secret to its policies (and the `anonymous` policy for requests without a token),
//! caching [`Acl`]s, and answering 403.

pub mod acl;
pub mod capability;
pub mod glob;
pub mod policy;
pub mod route;
pub mod syntax;
pub mod types;

pub use acl::Acl;
pub use capability::{
    Disposition, HostVolumeCapability, NamespaceCapability, NodePoolCapability, VariableCapability,
};
pub use policy::{GlobRule, NamespaceRule, Policy, PolicyError, VariableRule};
pub use route::{required, Access, Filter, Requirement};
pub use syntax::Diagnostic;
pub use types::{
    validate_policy_name, validate_role_name, AclPolicy, AclPolicyListStub, AclRole,
    AclRolePolicyLink, AclToken, AclTokenListStub, AclTokenRoleLink, JobAcl, TokenType,
};
