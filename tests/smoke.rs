mod common;

use common::TestBroker;
use mqttbytes::QoS;

#[tokio::test]
async fn raw_clients_exchange_a_message() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub", true).await;
    sub.subscribe(1, "a/+", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub", true).await;
    publisher
        .publish("a/b", QoS::AtLeastOnce, b"hi", false, 7)
        .await;
    let got = sub.expect_publish().await;
    assert_eq!(&got.payload[..], b"hi");
    broker.stop().await;
}
