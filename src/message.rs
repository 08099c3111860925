//! The one message model every entry point produces and every exit renders from.

use bytes::Bytes;

use crate::protocol::QoS;
use crate::topic::TopicName;

/// An application message. Cloning shares the payload and topic; it never copies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

impl Message {
    /// A copy owning exactly its own bytes. Decoded topics and payloads are slices of a
    /// receive buffer; what is kept for long is detached so it does not pin that buffer.
    pub fn detached(&self) -> Message {
        Message {
            topic: self.topic.detached(),
            payload: Bytes::copy_from_slice(&self.payload),
            ..self.clone()
        }
    }

    /// The same message as delivered at `qos` with the given retain flag.
    pub fn for_delivery(&self, qos: QoS, retain: bool) -> Message {
        Message {
            qos,
            retain,
            ..self.clone()
        }
    }
}
