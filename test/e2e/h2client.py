"""WebSockets over HTTP/2 (RFC 8441) with Python's h2 (Debian's python3-h2 4.1).

Usage: python3 h2client.py <port>

Over h2c (cleartext, prior knowledge), on ONE connection to 127.0.0.1:<port>:
  1. reads the server's first SETTINGS frame;
  2. stream 1: extended CONNECT /echo (:protocol websocket, version 13,
     subprotocol chat); on 200, sends one masked text frame, reads the echo;
  3. stream 3: extended CONNECT /private without credentials (refused: the
     status, headers and body of the answer, and how the stream ended);
  4. stream 5: extended CONNECT /private with `authorization: ok` (accepted:
     the server's first message, then an echo);
  5. one more frame on stream 1 (it outlived the refusal), then a close frame
     on streams 1 and 5 and the server's close frames; GOAWAY.

WebSocket frames are built and parsed by hand here (RFC 6455 section 5): the
client masks what it sends, the server must not. Prints one JSON object on
stdout. Every wait is bounded (5 s per read, at most 200 reads in all).
"""
import json
import socket
import struct
import sys

import h2
import h2.config
import h2.connection
import h2.events

TIMEOUT = 5
MAX_READS = 200
# RFC 6455 section 5.7's example masking key.
MASK = b'\x37\xfa\x21\x3d'


def frame(opcode, payload, mask=MASK):
    """A final, masked client frame (payloads under 126 bytes only)."""
    assert len(payload) < 126
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def parse_frames(buffer):
    """Complete frames at the front of buffer: (list of frames, rest)."""
    frames = []
    while len(buffer) >= 2:
        b0, b1 = buffer[0], buffer[1]
        length = b1 & 0x7F
        offset = 2
        if length == 126:
            if len(buffer) < 4:
                break
            length = struct.unpack('!H', buffer[2:4])[0]
            offset = 4
        elif length == 127:
            if len(buffer) < 10:
                break
            length = struct.unpack('!Q', buffer[2:10])[0]
            offset = 10
        masked = bool(b1 & 0x80)
        key = b''
        if masked:
            key = buffer[offset:offset + 4]
            offset += 4
        if len(buffer) < offset + length:
            break
        payload = buffer[offset:offset + length]
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        buffer = buffer[offset + length:]
        item = {'fin': bool(b0 & 0x80), 'rsv': (b0 >> 4) & 0x7, 'opcode': b0 & 0x0F, 'masked': masked}
        if item['opcode'] == 8:
            item['code'] = struct.unpack('!H', payload[:2])[0] if len(payload) >= 2 else None
            item['reason'] = payload[2:].decode('utf-8')
        else:
            item['data'] = payload.decode('utf-8')
        frames.append(item)
    return frames, buffer


class Client:
    def __init__(self, port):
        self.port = port
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT)
        config = h2.config.H2Configuration(client_side=True, header_encoding='utf-8')
        self.conn = h2.connection.H2Connection(config=config)
        self.reads = 0
        self.first_settings = None
        self.streams = {}
        self.goaway = None
        self.eof = False
        self.pongs = 0

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def state(self, stream_id):
        return self.streams.setdefault(stream_id, {
            'status': None, 'headers': None, 'body': b'', 'buffer': b'', 'frames': [], 'ended': [],
        })

    def pump(self, done):
        """Reads and handles events until done() is true (bounded)."""
        while not done():
            if self.eof:
                raise RuntimeError('connection closed by the server')
            if self.reads >= MAX_READS:
                raise RuntimeError('too many reads')
            self.reads += 1
            data = self.sock.recv(65536)
            if not data:
                self.eof = True
                continue
            for event in self.conn.receive_data(data):
                self.handle(event)
            self.flush()

    def handle(self, event):
        if isinstance(event, h2.events.RemoteSettingsChanged):
            if self.first_settings is None:
                self.first_settings = {
                    getattr(code, 'name', str(code)): setting.new_value
                    for code, setting in event.changed_settings.items()
                }
        elif isinstance(event, h2.events.ResponseReceived):
            st = self.state(event.stream_id)
            st['headers'] = [[name, value] for name, value in event.headers]
            st['status'] = int(dict(event.headers)[':status'])
        elif isinstance(event, h2.events.DataReceived):
            st = self.state(event.stream_id)
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if st['status'] == 200:
                frames, st['buffer'] = parse_frames(st['buffer'] + event.data)
                st['frames'].extend(frames)
            else:
                st['body'] += event.data
        elif isinstance(event, h2.events.StreamEnded):
            self.state(event.stream_id)['ended'].append('end_stream')
        elif isinstance(event, h2.events.StreamReset):
            self.state(event.stream_id)['ended'].append('reset %d' % event.error_code)
        elif isinstance(event, h2.events.PingAckReceived):
            self.pongs += 1
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event.error_code

    def connect(self, path, headers=()):
        stream_id = self.conn.get_next_available_stream_id()
        self.state(stream_id)
        self.conn.send_headers(stream_id, [
            (':method', 'CONNECT'),
            (':protocol', 'websocket'),
            (':scheme', 'http'),
            (':path', path),
            (':authority', '127.0.0.1:%d' % self.port),
            ('sec-websocket-version', '13'),
            *headers,
        ], end_stream=False)
        self.flush()
        self.pump(lambda: self.streams[stream_id]['status'] is not None or self.streams[stream_id]['ended'])
        return stream_id

    def send(self, stream_id, data):
        self.conn.send_data(stream_id, data)
        self.flush()

    def frames(self, stream_id, count):
        st = self.streams[stream_id]
        self.pump(lambda: len(st['frames']) >= count or st['ended'])
        return st['frames'][:count]

    def ping(self):
        """A PING round trip: what the server sent before its ACK has been handled."""
        pongs = self.pongs
        self.conn.ping(b'e2e-ping')
        self.flush()
        self.pump(lambda: self.pongs > pongs)


def answer(client, stream_id):
    """What a test compares: status, headers without date, body, frames, how the stream ended."""
    st = client.streams[stream_id]
    return {
        'stream': stream_id,
        'status': st['status'],
        'headers': [pair for pair in st['headers'] if pair[0] != 'date'],
        'body': st['body'].decode('utf-8'),
        'frames': st['frames'],
        'ended': st['ended'],
    }


def main():
    port = int(sys.argv[1])
    client = Client(port)
    out = {'h2': h2.__version__}
    try:
        client.conn.initiate_connection()
        client.flush()
        client.pump(lambda: client.first_settings is not None)
        out['settings'] = client.first_settings

        echo = client.connect('/echo', [('sec-websocket-protocol', 'chat')])
        if client.streams[echo]['status'] == 200:
            client.send(echo, frame(0x1, b'hello over h2'))
            client.frames(echo, 2)  # the welcome, then the echo

        refused = client.connect('/private')
        st = client.streams[refused]
        # The answer ends the stream; the server then closes our side too (RST_STREAM).
        client.pump(lambda: any(end.startswith('reset') for end in st['ended']))

        admitted = client.connect('/private', [('authorization', 'ok')])
        if client.streams[admitted]['status'] == 200:
            client.frames(admitted, 1)
            client.send(admitted, frame(0x1, b'second stream'))
            client.frames(admitted, 2)

        if client.streams[echo]['status'] == 200:
            client.send(echo, frame(0x1, b'still here'))
            client.frames(echo, 3)
            # Close both WebSockets (1000), and read the server's close frames.
            for stream_id, count in ((echo, 4), (admitted, 3)):
                client.send(stream_id, frame(0x8, struct.pack('!H', 1000) + b'done'))
                client.frames(stream_id, count)
            # The server ends its side after its close frame; then we end ours.
            for stream_id in (echo, admitted):
                s = client.streams[stream_id]
                client.pump(lambda s=s: bool(s['ended']))
                client.conn.end_stream(stream_id)
                client.flush()
            client.ping()

        out['streams'] = [answer(client, stream_id) for stream_id in (echo, refused, admitted)]
        out['goaway'] = client.goaway
        client.conn.close_connection()
        client.flush()
    except Exception as exc:  # reported, so that the test shows what happened
        out['error'] = '%s: %s' % (type(exc).__name__, exc)
        out['streams'] = [answer(client, stream_id) for stream_id in sorted(client.streams)
                          if client.streams[stream_id]['headers'] is not None]
    finally:
        client.sock.close()
    print(json.dumps(out))


if __name__ == '__main__':
    main()
