//! Allocations and evaluations.

use super::*;
use crate::url::encode;

impl Client {
    pub async fn allocations(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<AllocationListStub>, QueryMeta), ApiError> {
        self.get("/v1/allocations", opts).await
    }

    pub async fn allocation(&self, id: &str) -> Result<(Allocation, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/allocation/{}", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    pub async fn evaluations(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<Evaluation>, QueryMeta), ApiError> {
        self.get("/v1/evaluations", opts).await
    }

    pub async fn evaluation(&self, id: &str) -> Result<(Evaluation, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/evaluation/{}", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    pub async fn evaluation_allocations(
        &self,
        id: &str,
    ) -> Result<(Vec<AllocationListStub>, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/evaluation/{}/allocations", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }
}
