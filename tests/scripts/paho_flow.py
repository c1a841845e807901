"""QoS 1 flows with paho-mqtt against a broker, as an ordinary client would run them.

Usage: paho_flow.py HOST PORT MODE COUNT INFLIGHT
  MODE self   one client subscribed at QoS 1 to its own topic publishes COUNT messages
  MODE pair   two clients, each subscribed to its own topic, publish COUNT messages to each other
Prints one JSON line: {"acked": N, "delivered": N} (summed over clients). Gives up after 60 s.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

host, port, mode, count, inflight = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
lock = threading.Lock()
totals = {"acked": 0, "delivered": 0}
done = threading.Event()
expected = count if mode == "self" else 2 * count


def bump(key):
    with lock:
        totals[key] += 1
        if totals["acked"] == expected and totals["delivered"] == expected:
            done.set()


def client(name, own_topic):
    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(inflight)
    c.max_queued_messages_set(0)
    c.on_connect = lambda cl, ud, flags, rc, props: cl.subscribe(own_topic, qos=1)
    c.on_subscribe = lambda cl, ud, mid, rcs, props: subscribed.set()
    c.on_publish = lambda cl, ud, mid, rc, props: bump("acked")
    c.on_message = lambda cl, ud, msg: bump("delivered")
    c.connect(host, port, keepalive=30)
    c.loop_start()
    if not subscribed.wait(10):
        raise SystemExit(f"{name}: no SUBACK")
    return c


if mode == "self":
    a = client("paho-self", "flow/self")
    pairs = [(a, "flow/self")]
else:
    a = client("paho-a", "flow/a")
    b = client("paho-b", "flow/b")
    pairs = [(a, "flow/b"), (b, "flow/a")]

payload = b"x" * 100
for i in range(count):
    for c, topic in pairs:
        c.publish(topic, payload, qos=1)
done.wait(60)
for c, _ in pairs:
    c.loop_stop()
print(json.dumps(totals))
