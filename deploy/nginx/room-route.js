// Routing key for gateways with room affinity (njs; docs/deployment.md,
// "Room affinity"): the dispatch partition of the viewer's room, computed
// as every danmaku bus places it (bus.KeyPartition: Kafka's murmur2, as the
// Java client), and one of $room_slots slots drawn at random. nginx hashes
// the key consistently, so the viewers of the rooms of one partition reach
// the same few gateways and each gateway reads few dispatch partitions.
// Room ids are ASCII ([A-Za-z0-9_-]{1,64}), so characters are bytes.

function murmur2(s) {
    var m = 0x5bd1e995;
    var len = s.length;
    var h = (0x9747b28c ^ len) | 0;
    var i = 0;
    for (; i + 4 <= len; i += 4) {
        var k = (s.charCodeAt(i) & 0xff) | ((s.charCodeAt(i + 1) & 0xff) << 8) |
            ((s.charCodeAt(i + 2) & 0xff) << 16) | ((s.charCodeAt(i + 3) & 0xff) << 24);
        k = Math.imul(k, m);
        k ^= k >>> 24;
        k = Math.imul(k, m);
        h = Math.imul(h, m) ^ k;
    }
    var rest = len - i;
    if (rest >= 3) {
        h ^= (s.charCodeAt(i + 2) & 0xff) << 16;
    }
    if (rest >= 2) {
        h ^= (s.charCodeAt(i + 1) & 0xff) << 8;
    }
    if (rest >= 1) {
        h ^= s.charCodeAt(i) & 0xff;
        h = Math.imul(h, m);
    }
    h ^= h >>> 13;
    h = Math.imul(h, m);
    h ^= h >>> 15;
    return h >>> 0;
}

// partition is bus.KeyPartition(room, n).
function partition(room, n) {
    return (murmur2(room) & 0x7fffffff) % n;
}

// route is $room_route: "partition:slot", or the request id (spread at
// random) for a connection that names no room in its URL.
function route(r) {
    var room = r.variables.arg_room || '';
    var id = r.variables.request_id;
    if (room === '') {
        return id;
    }
    var parts = Number(r.variables.dispatch_partitions) || 12;
    var slots = Number(r.variables.room_slots) || 2;
    return partition(room, parts) + ':' + (parseInt(id.slice(-4), 16) % slots);
}

export default { route, partition, murmur2 };
