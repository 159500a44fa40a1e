//! `qdrant.Collections`: each method converts its message, calls the node method the
//! REST route calls, and converts the answer.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::convert::collections as convert;
use super::proto::collections_server::Collections;
use super::proto::*;
use super::{answer, seconds_since};
use crate::node::Node;

pub struct CollectionsService {
    pub node: Arc<Node>,
}

fn done(result: bool, start: Instant) -> CollectionOperationResponse {
    CollectionOperationResponse {
        result,
        time: seconds_since(start),
    }
}

#[tonic::async_trait]
impl Collections for CollectionsService {
    async fn get(
        &self,
        request: Request<GetCollectionInfoRequest>,
    ) -> Result<Response<GetCollectionInfoResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        answer(async {
            let info = self.node.collection_info(&name).await?;
            Ok(GetCollectionInfoResponse {
                result: Some(convert::collection_info(info)),
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn list(
        &self,
        _request: Request<ListCollectionsRequest>,
    ) -> Result<Response<ListCollectionsResponse>, Status> {
        let start = Instant::now();
        let collections = self
            .node
            .list_collections()
            .into_iter()
            .map(|name| CollectionDescription { name })
            .collect();
        Ok(Response::new(ListCollectionsResponse {
            collections,
            time: seconds_since(start),
        }))
    }

    async fn create(
        &self,
        request: Request<CreateCollection>,
    ) -> Result<Response<CollectionOperationResponse>, Status> {
        let start = Instant::now();
        answer(async {
            let (name, body) = convert::create_collection(request.into_inner())?;
            self.node.create_collection(&name, body).await?;
            Ok(done(true, start))
        })
        .await
    }

    async fn update(
        &self,
        request: Request<UpdateCollection>,
    ) -> Result<Response<CollectionOperationResponse>, Status> {
        let start = Instant::now();
        answer(async {
            let (name, diff) = convert::update_collection(request.into_inner())?;
            self.node.update_collection(&name, diff).await?;
            Ok(done(true, start))
        })
        .await
    }

    async fn delete(
        &self,
        request: Request<DeleteCollection>,
    ) -> Result<Response<CollectionOperationResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        answer(async {
            let deleted = self.node.delete_collection(&name).await?;
            Ok(done(deleted, start))
        })
        .await
    }

    async fn update_aliases(
        &self,
        request: Request<ChangeAliases>,
    ) -> Result<Response<CollectionOperationResponse>, Status> {
        let start = Instant::now();
        answer(async {
            let actions = convert::alias_actions(request.into_inner().actions)?;
            self.node.update_aliases(actions).await?;
            Ok(done(true, start))
        })
        .await
    }

    async fn list_collection_aliases(
        &self,
        request: Request<ListCollectionAliasesRequest>,
    ) -> Result<Response<ListAliasesResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        answer(async {
            let aliases = self.node.list_aliases(Some(&name))?;
            Ok(ListAliasesResponse {
                aliases: convert::aliases(aliases),
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn list_aliases(
        &self,
        _request: Request<ListAliasesRequest>,
    ) -> Result<Response<ListAliasesResponse>, Status> {
        let start = Instant::now();
        answer(async {
            let aliases = self.node.list_aliases(None)?;
            Ok(ListAliasesResponse {
                aliases: convert::aliases(aliases),
                time: seconds_since(start),
            })
        })
        .await
    }

    async fn collection_cluster_info(
        &self,
        request: Request<CollectionClusterInfoRequest>,
    ) -> Result<Response<CollectionClusterInfoResponse>, Status> {
        let name = request.into_inner().collection_name;
        answer(async {
            let info = self.node.collection_cluster_info(&name).await?;
            Ok(convert::cluster_info(info))
        })
        .await
    }

    async fn collection_exists(
        &self,
        request: Request<CollectionExistsRequest>,
    ) -> Result<Response<CollectionExistsResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        let exists = self.node.collection_exists(&name);
        Ok(Response::new(CollectionExistsResponse {
            result: Some(CollectionExists { exists }),
            time: seconds_since(start),
        }))
    }
}
