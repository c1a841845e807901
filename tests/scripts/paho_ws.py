"""paho-mqtt over its websockets transport (ws, or wss with a CA file) against a broker.

Usage: paho_ws.py HOST PORT PATH CAFILE|- COUNT
One client subscribes to paho/ws/# at QoS 1, a second one publishes COUNT messages at QoS 1
and one at QoS 2 (MQTT 5 for the subscriber, 3.1.1 for the publisher). Prints one JSON line:
{"received": N, "acked": N}. Gives up after 30 s.
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt

host, port, path, cafile, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
lock = threading.Lock()
totals = {"received": 0, "acked": 0}
done = threading.Event()
expected = count + 1


def bump(key):
    with lock:
        totals[key] += 1
        if totals["received"] == expected and totals["acked"] == expected:
            done.set()


def client(name, protocol):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=protocol,
                    transport="websockets")
    c.ws_set_options(path=path)
    if cafile != "-":
        c.tls_set(ca_certs=cafile)
    return c


subscribed = threading.Event()
sub = client("paho-ws-sub", mqtt.MQTTv5)
sub.on_connect = lambda cl, ud, flags, rc, props: cl.subscribe("paho/ws/#", qos=1)
sub.on_subscribe = lambda cl, ud, mid, rcs, props: subscribed.set()
sub.on_message = lambda cl, ud, msg: bump("received")
sub.connect(host, port, keepalive=30)
sub.loop_start()
if not subscribed.wait(10):
    raise SystemExit("subscriber: no SUBACK")

pub = client("paho-ws-pub", mqtt.MQTTv311)
pub.on_publish = lambda cl, ud, mid, rc, props: bump("acked")
pub.connect(host, port, keepalive=30)
pub.loop_start()
for i in range(count):
    pub.publish("paho/ws/%d" % i, b"x" * (i * 37 % 3000), qos=1)
pub.publish("paho/ws/exactly-once", b"2", qos=2)
done.wait(30)
pub.loop_stop()
sub.loop_stop()
print(json.dumps(totals))
