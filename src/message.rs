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
    /// The same message as delivered at `qos` with the given retain flag.
    pub fn for_delivery(&self, qos: QoS, retain: bool) -> Message {
        Message {
            qos,
            retain,
            ..self.clone()
        }
    }
}
