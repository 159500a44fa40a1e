//! The protobuf codec of the public gRPC API: prost's, except that a request that does
//! not decode as the method's message (a wrong message type, corrupt bytes) answers
//! `InvalidArgument`, as Qdrant's API promises for bad input, instead of prost's
//! `Internal`. `build.rs` points the generated public services at this codec.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstDecoder, ProstEncoder};

pub struct QdrantCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for QdrantCodec<T, U> {
    fn default() -> Self {
        QdrantCodec(PhantomData)
    }
}

impl<T, U> Codec for QdrantCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder(ProstDecoder::new(BufferSettings::default()))
    }
}

/// prost's decoder with undecodable input classed as the caller's error.
pub struct RequestDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(src).map_err(|status| {
            if status.code() == Code::Internal {
                Status::invalid_argument(format!(
                    "Wrong input: the message does not decode as the method's request: {}",
                    status.message()
                ))
            } else {
                status
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
