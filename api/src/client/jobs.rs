//! Jobs: register, read, deregister, versions, revert, stability and scaling.

use super::*;
use crate::url::encode;
use crate::*;

impl Client {
    /// Launch a child of a parameterized job (`PUT /v1/job/:id/dispatch`).
    pub async fn dispatch_job(
        &self,
        id: &str,
        req: &JobDispatchRequest,
    ) -> Result<JobDispatchResponse, ApiError> {
        self.put(&format!("/v1/job/{}/dispatch", encode(id)), req)
            .await
    }

    /// Launch a periodic job's child now (`PUT /v1/job/:id/periodic/force`).
    pub async fn periodic_force(&self, id: &str) -> Result<PeriodicForceResponse, ApiError> {
        self.put(&format!("/v1/job/{}/periodic/force", encode(id)), &())
            .await
    }

    pub async fn register_job(&self, job: &Job) -> Result<JobRegisterResponse, ApiError> {
        self.register_job_opts(job, None).await
    }

    /// Register a job; with `check_index`, only if the job's modify index still matches.
    pub async fn register_job_opts(
        &self,
        job: &Job,
        check_index: Option<u64>,
    ) -> Result<JobRegisterResponse, ApiError> {
        let req = JobRegisterRequest {
            job: Some(job.clone()),
            enforce_index: check_index.is_some(),
            job_modify_index: check_index.unwrap_or(0),
            ..Default::default()
        };
        self.put("/v1/jobs", &req).await
    }

    pub async fn jobs(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<JobListStub>, QueryMeta), ApiError> {
        self.get("/v1/jobs", opts).await
    }

    pub async fn job(&self, id: &str) -> Result<(Job, QueryMeta), ApiError> {
        self.get(&format!("/v1/job/{}", encode(id)), &QueryOptions::default())
            .await
    }

    pub async fn job_allocations(
        &self,
        id: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<AllocationListStub>, QueryMeta), ApiError> {
        self.get(&format!("/v1/job/{}/allocations", encode(id)), opts)
            .await
    }

    pub async fn job_evaluations(
        &self,
        id: &str,
    ) -> Result<(Vec<Evaluation>, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/job/{}/evaluations", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    pub async fn job_summary(&self, id: &str) -> Result<(JobSummary, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/job/{}/summary", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    pub async fn job_versions(
        &self,
        id: &str,
    ) -> Result<(JobVersionsResponse, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/job/{}/versions", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    pub async fn deregister_job(
        &self,
        id: &str,
        purge: bool,
    ) -> Result<JobDeregisterResponse, ApiError> {
        self.delete(
            &format!("/v1/job/{}", encode(id)),
            &[("purge".to_string(), purge.to_string())],
        )
        .await
    }

    /// Every version of a job, newest first, each with its diff to the one before.
    pub async fn job_versions_with_diffs(
        &self,
        id: &str,
    ) -> Result<(JobVersionsResponse, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/job/{}/versions?diffs=true", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    /// Register version `version`'s spec again as the job's next version.
    pub async fn revert_job(
        &self,
        job_id: &str,
        version: u64,
        enforce_prior_version: Option<u64>,
    ) -> Result<JobRegisterResponse, ApiError> {
        let req = crate::JobRevertRequest {
            job_id: job_id.to_string(),
            job_version: version,
            enforce_prior_version,
        };
        self.put(&format!("/v1/job/{}/revert", encode(job_id)), &req)
            .await
    }

    pub async fn set_job_stability(
        &self,
        job_id: &str,
        version: u64,
        stable: bool,
    ) -> Result<crate::JobStabilityResponse, ApiError> {
        let req = crate::JobStabilityRequest {
            job_id: job_id.to_string(),
            job_version: version,
            stable,
        };
        self.put(&format!("/v1/job/{}/stable", encode(job_id)), &req)
            .await
    }

    /// Set a group's count (a new job version).
    pub async fn scale_job(
        &self,
        job_id: &str,
        group: &str,
        count: i64,
        message: &str,
    ) -> Result<JobRegisterResponse, ApiError> {
        let req = crate::ScalingRequest {
            count: Some(count),
            target: [("Group".to_string(), group.to_string())].into(),
            message: message.to_string(),
            ..Default::default()
        };
        self.put(&format!("/v1/job/{}/scale", encode(job_id)), &req)
            .await
    }

    pub async fn job_scale_status(
        &self,
        job_id: &str,
    ) -> Result<(crate::JobScaleStatus, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/job/{}/scale", encode(job_id)),
            &QueryOptions::default(),
        )
        .await
    }
}
