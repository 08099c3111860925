// Shared by the `connection` fuzz target and tests/fuzz_regressions.rs (by `include!`):
// how an input becomes the bytes a client sends.

/// CONNECT, MQTT 3.1.1, client id "f", clean session, keep alive 60.
const CONNECT_V311: &[u8] = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01f";
/// CONNECT, MQTT 5.0, client id "f", clean start, keep alive 60, Topic Alias Maximum 5
/// and Receive Maximum 3.
const CONNECT_V5: &[u8] =
    b"\x10\x14\x00\x04MQTT\x05\x02\x00\x3c\x06\x22\x00\x05\x21\x00\x03\x00\x01f";

/// The input after its first byte, behind the CONNECT that byte chooses (MQTT 3.1.1,
/// 5.0, or none), to reach the state machine beyond the handshake.
fn with_connect(input: &[u8]) -> Vec<u8> {
    let Some((&choice, rest)) = input.split_first() else {
        return Vec::new();
    };
    let connect = match choice % 3 {
        0 => CONNECT_V311,
        1 => CONNECT_V5,
        _ => &[],
    };
    [connect, rest].concat()
}
