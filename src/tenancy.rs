//! Tenancy: which tenants' data a caller may see. Every domain query takes a `Scope`; delivery
//! derives it from the caller's credentials (an API key, a signed-in cookie, a stream token).

/// The tenants a caller may see: all (an operator key, or no keys configured) or one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Tenant(String),
}

impl Scope {
    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenant(t) => t == tenant,
        }
    }

    pub fn tenant(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Tenant(t) => Some(t),
        }
    }
}
