//! Deployments: list, read, promote, fail, pause, alloc health.

use super::*;
use crate::url::encode;

impl Client {
    pub async fn deployments(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<crate::Deployment>, QueryMeta), ApiError> {
        self.get("/v1/deployments", opts).await
    }

    pub async fn deployment(
        &self,
        id: &str,
        opts: &QueryOptions,
    ) -> Result<(crate::Deployment, QueryMeta), ApiError> {
        self.get(&format!("/v1/deployment/{}", encode(id)), opts)
            .await
    }

    pub async fn deployment_allocations(
        &self,
        id: &str,
    ) -> Result<(Vec<crate::AllocationListStub>, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/deployment/allocations/{}", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    /// Promote the canaries of every group (`groups` empty) or of the named ones.
    pub async fn promote_deployment(
        &self,
        id: &str,
        groups: &[String],
    ) -> Result<crate::DeploymentUpdateResponse, ApiError> {
        let req = crate::DeploymentPromoteRequest {
            deployment_id: id.to_string(),
            all: groups.is_empty(),
            groups: groups.to_vec(),
        };
        self.put(&format!("/v1/deployment/promote/{}", encode(id)), &req)
            .await
    }

    pub async fn fail_deployment(
        &self,
        id: &str,
    ) -> Result<crate::DeploymentUpdateResponse, ApiError> {
        let req = crate::DeploymentFailRequest {
            deployment_id: id.to_string(),
        };
        self.put(&format!("/v1/deployment/fail/{}", encode(id)), &req)
            .await
    }

    /// Pause (`true`) or resume (`false`) a deployment.
    pub async fn pause_deployment(
        &self,
        id: &str,
        pause: bool,
    ) -> Result<crate::DeploymentUpdateResponse, ApiError> {
        let req = crate::DeploymentPauseRequest {
            deployment_id: id.to_string(),
            pause,
        };
        self.put(&format!("/v1/deployment/pause/{}", encode(id)), &req)
            .await
    }

    pub async fn set_deployment_alloc_health(
        &self,
        id: &str,
        healthy: &[String],
        unhealthy: &[String],
    ) -> Result<crate::DeploymentUpdateResponse, ApiError> {
        let req = crate::DeploymentAllocHealthRequest {
            deployment_id: id.to_string(),
            healthy_allocation_ids: healthy.to_vec(),
            unhealthy_allocation_ids: unhealthy.to_vec(),
        };
        self.put(
            &format!("/v1/deployment/allocation-health/{}", encode(id)),
            &req,
        )
        .await
    }

    pub async fn job_deployments(
        &self,
        job_id: &str,
    ) -> Result<(Vec<crate::Deployment>, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/job/{}/deployments", encode(job_id)),
            &QueryOptions::default(),
        )
        .await
    }

    /// The job's newest deployment, if it has one.
    pub async fn job_latest_deployment(
        &self,
        job_id: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<crate::Deployment>, QueryMeta), ApiError> {
        self.get(&format!("/v1/job/{}/deployment", encode(job_id)), opts)
            .await
    }
}
