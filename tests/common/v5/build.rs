//! The packets a client sends, byte by byte.

use super::*;
use crate::common::{field, frame};

/// A Variable Byte Integer.
fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// A property list under construction; [`Props::encoded`] prefixes its length.
#[derive(Debug, Clone, Default)]
pub struct Props(Vec<u8>);

impl Props {
    pub fn new() -> Props {
        Props::default()
    }

    pub fn byte(mut self, id: u8, value: u8) -> Props {
        self.0.extend([id, value]);
        self
    }

    pub fn u16(mut self, id: u8, value: u16) -> Props {
        self.0.push(id);
        self.0.extend(value.to_be_bytes());
        self
    }

    pub fn u32(mut self, id: u8, value: u32) -> Props {
        self.0.push(id);
        self.0.extend(value.to_be_bytes());
        self
    }

    pub fn varint(mut self, id: u8, value: u32) -> Props {
        self.0.push(id);
        self.0.extend(varint(value as usize));
        self
    }

    pub fn str(self, id: u8, value: &str) -> Props {
        self.bin(id, value.as_bytes())
    }

    /// A string or binary property of arbitrary bytes.
    pub fn bin(mut self, id: u8, value: &[u8]) -> Props {
        self.0.push(id);
        self.0.extend(field(value));
        self
    }

    pub fn user(mut self, key: &str, value: &str) -> Props {
        self.0.push(USER_PROPERTY);
        self.0.extend(field(key.as_bytes()));
        self.0.extend(field(value.as_bytes()));
        self
    }

    /// Arbitrary bytes inside the list.
    pub fn raw(mut self, bytes: &[u8]) -> Props {
        self.0.extend_from_slice(bytes);
        self
    }

    /// Property Length followed by the properties.
    pub fn encoded(&self) -> Vec<u8> {
        let mut out = varint(self.0.len());
        out.extend_from_slice(&self.0);
        out
    }
}

/// A will for [`Connect`].
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

impl Will {
    pub fn new(topic: &str, payload: &[u8]) -> Will {
        Will {
            topic: topic.into(),
            payload: payload.to_vec(),
            qos: 0,
            retain: false,
            props: Props::new(),
        }
    }

    pub fn qos(mut self, qos: u8) -> Will {
        self.qos = qos;
        self
    }

    pub fn retain(mut self) -> Will {
        self.retain = true;
        self
    }

    pub fn props(mut self, props: Props) -> Will {
        self.props = props;
        self
    }

    pub fn delay(mut self, secs: u32) -> Will {
        self.props = self.props.u32(WILL_DELAY_INTERVAL, secs);
        self
    }
}

/// An MQTT 5.0 CONNECT: clean start, keep alive 30 s, no properties unless set.
#[derive(Debug, Clone)]
pub struct Connect {
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub session_expiry: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    /// Further properties, after the ones above.
    pub props: Props,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

impl Connect {
    pub fn new(client_id: &str) -> Connect {
        Connect {
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 30,
            session_expiry: None,
            receive_maximum: None,
            maximum_packet_size: None,
            topic_alias_maximum: None,
            props: Props::new(),
            will: None,
            username: None,
            password: None,
        }
    }

    /// Clean Start 0 and the given Session Expiry Interval.
    pub fn resume(client_id: &str, expiry: u32) -> Connect {
        Connect::new(client_id).clean(false).expiry(expiry)
    }

    pub fn clean(mut self, clean_start: bool) -> Connect {
        self.clean_start = clean_start;
        self
    }

    pub fn keep_alive(mut self, secs: u16) -> Connect {
        self.keep_alive = secs;
        self
    }

    pub fn expiry(mut self, secs: u32) -> Connect {
        self.session_expiry = Some(secs);
        self
    }

    pub fn receive_maximum(mut self, max: u16) -> Connect {
        self.receive_maximum = Some(max);
        self
    }

    pub fn maximum_packet_size(mut self, max: u32) -> Connect {
        self.maximum_packet_size = Some(max);
        self
    }

    pub fn topic_alias_maximum(mut self, max: u16) -> Connect {
        self.topic_alias_maximum = Some(max);
        self
    }

    pub fn props(mut self, props: Props) -> Connect {
        self.props = props;
        self
    }

    pub fn will(mut self, will: Will) -> Connect {
        self.will = Some(will);
        self
    }

    pub fn username(mut self, name: &str) -> Connect {
        self.username = Some(name.into());
        self
    }

    pub fn password(mut self, password: &[u8]) -> Connect {
        self.password = Some(password.to_vec());
        self
    }

    /// All properties: the named ones, then [`Connect::props`].
    fn properties(&self) -> Props {
        let mut props = Props::new();
        if let Some(v) = self.session_expiry {
            props = props.u32(SESSION_EXPIRY_INTERVAL, v);
        }
        if let Some(v) = self.receive_maximum {
            props = props.u16(RECEIVE_MAXIMUM, v);
        }
        if let Some(v) = self.maximum_packet_size {
            props = props.u32(MAXIMUM_PACKET_SIZE, v);
        }
        if let Some(v) = self.topic_alias_maximum {
            props = props.u16(TOPIC_ALIAS_MAXIMUM, v);
        }
        props.raw(&self.props.0)
    }

    /// The connect flags byte.
    pub fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos << 3);
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        flags
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.bytes_with(b"MQTT", 5, self.flags())
    }

    /// The CONNECT with another protocol name, level or flags byte.
    pub fn bytes_with(&self, name: &[u8], level: u8, flags: u8) -> Vec<u8> {
        let mut body = field(name);
        body.push(level);
        body.push(flags);
        body.extend(self.keep_alive.to_be_bytes());
        body.extend(self.properties().encoded());
        body.extend(field(self.client_id.as_bytes()));
        if let Some(will) = &self.will {
            body.extend(will.props.encoded());
            body.extend(field(will.topic.as_bytes()));
            body.extend(field(&will.payload));
        }
        if let Some(name) = &self.username {
            body.extend(field(name.as_bytes()));
        }
        if let Some(password) = &self.password {
            body.extend(field(password));
        }
        frame(0x10, &body)
    }
}

/// An MQTT 5.0 PUBLISH from a client.
#[derive(Debug, Clone)]
pub struct Publish {
    pub topic: Vec<u8>,
    pub qos: u8,
    pub pkid: u16,
    pub retain: bool,
    pub dup: bool,
    pub props: Props,
    pub payload: Vec<u8>,
}

impl Publish {
    /// A PUBLISH at `qos`; QoS 1 and 2 get packet id 1 unless [`Publish::pkid`] says.
    pub fn new(topic: &str, qos: u8, payload: &[u8]) -> Publish {
        Publish::raw_topic(topic.as_bytes(), qos, payload)
    }

    /// A PUBLISH whose topic may be any bytes.
    pub fn raw_topic(topic: &[u8], qos: u8, payload: &[u8]) -> Publish {
        Publish {
            topic: topic.to_vec(),
            qos,
            pkid: 1,
            retain: false,
            dup: false,
            props: Props::new(),
            payload: payload.to_vec(),
        }
    }

    pub fn pkid(mut self, pkid: u16) -> Publish {
        self.pkid = pkid;
        self
    }

    pub fn retain(mut self) -> Publish {
        self.retain = true;
        self
    }

    pub fn dup(mut self) -> Publish {
        self.dup = true;
        self
    }

    pub fn props(mut self, props: Props) -> Publish {
        self.props = props;
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut first = 0x30 | (self.qos << 1);
        if self.retain {
            first |= 0x01;
        }
        if self.dup {
            first |= 0x08;
        }
        let mut body = field(&self.topic);
        if self.qos > 0 {
            body.extend(self.pkid.to_be_bytes());
        }
        body.extend(self.props.encoded());
        body.extend_from_slice(&self.payload);
        frame(first, &body)
    }
}

/// A SUBSCRIBE of (filter, options byte) pairs.
pub fn subscribe(pkid: u16, props: &Props, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend(props.encoded());
    for (filter, options) in filters {
        body.extend(field(filter.as_bytes()));
        body.push(*options);
    }
    frame(0x82, &body)
}

pub fn unsubscribe(pkid: u16, props: &Props, filters: &[&str]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend(props.encoded());
    for filter in filters {
        body.extend(field(filter.as_bytes()));
    }
    frame(0xa2, &body)
}

pub const PUBACK: u8 = 0x40;
pub const PUBREC: u8 = 0x50;
pub const PUBREL: u8 = 0x62;
pub const PUBCOMP: u8 = 0x70;

/// PUBACK, PUBREC, PUBREL or PUBCOMP (`first`) in the short form: reason code 0x00
/// and no properties.
pub fn ack(first: u8, pkid: u16) -> Vec<u8> {
    frame(first, &pkid.to_be_bytes())
}

/// An acknowledgement with a reason code and properties.
pub fn ack_with(first: u8, pkid: u16, reason: u8, props: &Props) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.push(reason);
    body.extend(props.encoded());
    frame(first, &body)
}

pub fn disconnect(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props.encoded());
    frame(0xe0, &body)
}

pub fn auth(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props.encoded());
    frame(0xf0, &body)
}

pub const PINGREQ: [u8; 2] = [0xc0, 0x00];
pub const NORMAL_DISCONNECT: [u8; 2] = [0xe0, 0x00];
