"""MQTT 5.0 server options seen by paho-mqtt (v5 mode), as an ordinary client would see them.

Usage: paho_v5_options.py HOST PORT
Connects asking for Response Information (and no topic aliases: paho 2.1 sends a Topic Alias
Maximum if told to, but does not resolve the aliases it then receives), subscribes to p/# at
QoS 2, publishes three QoS 1 messages to p/x (the first two with Topic Alias 1), and prints one
JSON line: the CONNACK properties it read, the granted QoS and the topics and payloads received.
Gives up after 20 s.
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

host, port = sys.argv[1], int(sys.argv[2])
out = {"received": []}
subscribed = threading.Event()
done = threading.Event()


def on_connect(client, userdata, flags, reason_code, props):
    out["connack"] = {
        "reason": reason_code.value,
        "response_information": getattr(props, "ResponseInformation", None),
        "topic_alias_maximum": getattr(props, "TopicAliasMaximum", None),
        "maximum_qos": getattr(props, "MaximumQoS", None),
    }
    client.subscribe("p/#", qos=2)


def on_subscribe(client, userdata, mid, reason_codes, props):
    out["granted"] = [rc.value for rc in reason_codes]
    subscribed.set()


def on_message(client, userdata, msg):
    out["received"].append([msg.topic, msg.payload.decode()])
    if len(out["received"]) == 3:
        done.set()


c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-v5", protocol=mqtt.MQTTv5)
c.on_connect = on_connect
c.on_subscribe = on_subscribe
c.on_message = on_message
props = Properties(PacketTypes.CONNECT)
props.RequestResponseInformation = 1
c.connect(host, port, keepalive=30, properties=props)
c.loop_start()
if not subscribed.wait(20):
    raise SystemExit("no SUBACK")
for n in range(3):
    publish_props = Properties(PacketTypes.PUBLISH)
    if n < 2:
        publish_props.TopicAlias = 1
    c.publish("p/x", f"m{n}", qos=1, properties=publish_props).wait_for_publish(20)
if not done.wait(20):
    raise SystemExit(f"only {out['received']} arrived")
c.disconnect()
c.loop_stop()
print(json.dumps(out))
