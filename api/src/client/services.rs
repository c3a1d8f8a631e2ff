//! Services (`provider = "nomad"`): the agents' registrations and the public reads.

use super::*;
use crate::url::encode;

impl Client {
    /// Registers and deregisters service instances of this node's allocations
    /// (`PUT /v1/internal/node/:id/services`, to a server's RPC listener).
    pub async fn update_services(
        &self,
        node_id: &str,
        secret: &str,
        update: &crate::ServiceUpdateRequest,
    ) -> Result<WriteResponse, ApiError> {
        self.put_with_headers(
            &format!("/v1/internal/node/{}/services", encode(node_id)),
            update,
            &secret_header(secret),
        )
        .await
    }

    /// `GET /v1/services`: per namespace, each service name and its tags. `namespace`
    /// `None` means `default`, `Some("*")` every namespace.
    pub async fn services(
        &self,
        namespace: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<crate::ServiceRegistrationListStub>, QueryMeta), ApiError> {
        self.get(&with_namespace("/v1/services", namespace), opts)
            .await
    }

    /// `GET /v1/service/:name`: the registered instances of a service.
    pub async fn service(
        &self,
        name: &str,
        namespace: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<crate::ServiceRegistration>, QueryMeta), ApiError> {
        let path = format!("/v1/service/{}", encode(name));
        self.get(&with_namespace(&path, namespace), opts).await
    }

    /// `DELETE /v1/service/:name/:id`: remove one registration.
    pub async fn delete_service(
        &self,
        name: &str,
        id: &str,
        namespace: Option<&str>,
    ) -> Result<WriteResponse, ApiError> {
        let query: Vec<(String, String)> = namespace
            .map(|ns| vec![("namespace".to_string(), ns.to_string())])
            .unwrap_or_default();
        self.delete(
            &format!("/v1/service/{}/{}", encode(name), encode(id)),
            &query,
        )
        .await
    }

    /// `GET /v1/job/:id/services`.
    pub async fn job_services(
        &self,
        job_id: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<crate::ServiceRegistration>, QueryMeta), ApiError> {
        self.get(&format!("/v1/job/{}/services", encode(job_id)), opts)
            .await
    }

    /// `GET /v1/allocation/:id/services`.
    pub async fn allocation_services(
        &self,
        alloc_id: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<crate::ServiceRegistration>, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/allocation/{}/services", encode(alloc_id)),
            opts,
        )
        .await
    }
}
