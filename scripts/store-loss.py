#!/usr/bin/env python3
"""What a broker loses of acknowledged messages across kill -9 (scripts/bench-store drives it).

    store-loss.py PORT prime            a persistent subscriber (clean session 0) subscribes to
                                        loss/# at QoS 1 and disconnects
    store-loss.py PORT publish N        publishes N QoS 1 messages to loss/x; prints how many
                                        were acknowledged (PUBACK)
    store-loss.py PORT drain            the subscriber resumes; prints how many distinct
                                        messages it received (until 3 s pass without one)
Needs paho-mqtt 2 (pip install paho-mqtt). Every wait is bounded.
"""
import os
import sys
import threading
import time

import paho.mqtt.client as mqtt

PORT = int(sys.argv[1])
PHASE = sys.argv[2]


def client(client_id, clean, on_message=None):
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        protocol=mqtt.MQTTv311,
    )
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    if on_message:
        # Before connecting: a resumed session's messages come right after CONNACK.
        c.on_message = on_message
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", PORT, keepalive=60)
    c.loop_start()
    if not connected.wait(30):
        sys.exit("no CONNACK")
    return c


def wait_until(cond, limit):
    end = time.time() + limit
    while not cond() and time.time() < end:
        time.sleep(0.01)
    return cond()


if PHASE == "prime":
    c = client("loss-sub", False)
    subscribed = threading.Event()
    c.on_subscribe = lambda *a: subscribed.set()
    c.subscribe("loss/#", 1)
    if not subscribed.wait(30):
        sys.exit("no SUBACK")
    c.disconnect()
    c.loop_stop()
elif PHASE == "publish":
    n = int(sys.argv[3])
    acked = set()
    lock = threading.Lock()

    def on_publish(_c, _u, mid, *_rest):
        with lock:
            acked.add(mid)

    c = client("loss-pub", True)
    c.on_publish = on_publish
    for i in range(n):
        c.publish("loss/x", str(i).encode(), qos=1)
    wait_until(lambda: len(acked) >= n, 120)
    print(len(acked))
    sys.stdout.flush()
    # No DISCONNECT: the broker is killed next, as it would be mid-stream.
    c.loop_stop()
elif PHASE == "drain":
    seen = set()
    last = [time.time()]

    def on_message(_c, _u, msg):
        seen.add(msg.payload)
        last[0] = time.time()

    c = client("loss-sub", False, on_message)
    deadline = time.time() + 120
    idle = float(os.environ.get("STORE_LOSS_IDLE", "3"))
    while time.time() < deadline and time.time() - last[0] < idle:
        time.sleep(0.05)
    print(len(seen))
    c.disconnect()
    c.loop_stop()
else:
    sys.exit(__doc__)
