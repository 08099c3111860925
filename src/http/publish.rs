//! `POST /publish?topic=T[&qos=N][&retain=true]`: the body is the payload.

use bytestring::ByteString;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::query::{bad, Query};
use super::{json_reply, Outcome, Refusal, Shared};
use crate::acl::Permit;
use crate::message::{Message, Stamp};
use crate::protocol::QoS;
use crate::topic::TopicName;

/// How long a publish waits for a full subscriber queue to make room.
const CONGESTION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Publishes the body once it is whole and within the size limit; answers with the
/// event id once the broker has accepted the message at the QoS asked (for QoS 1 and
/// 2: stored, where persistence is on).
pub async fn publish(
    request: Request<Incoming>,
    permit: Option<Box<Permit>>,
    shared: &Shared,
) -> Outcome {
    let query = Query::of(request.uri())?;
    let topic = query
        .single("topic")?
        .ok_or_else(|| bad("a topic is needed: ?topic=a/b"))?;
    let topic = TopicName::new(ByteString::from(topic))
        .map_err(|e| bad(format!("topic {topic:?}: {e}")))?;
    if let Some(why) = shared.broker.topic_refusal(topic.as_str()) {
        return Err(bad(format!("topic {:?} is {why}", topic.as_str())));
    }
    if permit.is_some_and(|permit| !permit.grants().may_write(&topic)) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("not allowed to publish to {topic}"),
        ));
    }
    let qos = match query.number("qos")? {
        None | Some(0) => QoS::AtMostOnce,
        Some(1) => QoS::AtLeastOnce,
        Some(2) => QoS::ExactlyOnce,
        Some(other) => return Err(bad(format!("qos must be 0, 1 or 2, not {other}"))),
    };
    let retain = query.flag("retain", false)?;
    let limit = shared
        .web
        .max_body_bytes
        .min(shared.broker.limits.max_packet_size.0);
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the payload is over {limit} bytes"),
        )
    };
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let payload = match Limited::new(request.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => return Err(bad(format!("the body could not be read: {e}"))),
    };
    let message = Message {
        topic,
        payload,
        qos,
        retain,
        properties: None,
        published_at: Stamp::now(),
    };
    let mut counts = [0; 3];
    counts[qos as usize] = 1;
    shared.broker.stats.received(counts);
    let published = shared.broker.publish(message, None);
    if let (Some(session), true) = (&published.congested, qos != QoS::AtMostOnce) {
        // As an MQTT publisher pauses, the answer waits (for a while) until the queue
        // this message filled has room: the message itself is queued either way.
        let limits = shared.broker.queue_limits();
        let room = shared.broker.room(session, limits);
        let _ = tokio::time::timeout(CONGESTION_WAIT, room).await;
    }
    if qos != QoS::AtMostOnce {
        shared.broker.durable(published.ticket).await.map_err(|e| {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the message could not be stored: {e}"),
            )
        })?;
    }
    let id = published.id.unwrap_or_default();
    let answer = json!({ "id": id.to_string() });
    Ok(json_reply(StatusCode::OK, answer.to_string()))
}
