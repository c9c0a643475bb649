// Routing key for gateways with room affinity (njs; docs/deployment.md,
// "Room affinity"): the dispatch partition of the viewer's room, computed
// as every danmaku bus places it (bus.KeyPartition: Kafka's murmur2, as the
// Java client), and one of $room_slots slots drawn at random. nginx hashes
// the key consistently, so the viewers of the rooms of one partition reach
// the same few gateways and each gateway reads few dispatch partitions.
// Room ids are ASCII ([A-Za-z0-9_-]{1,64}), so characters are bytes.
//
// Hot rooms: a room with more viewers than perSlot (js_var
// $room_viewers_per_slot) gets slots of its own, ceil(viewers / perSlot)
// (at most maxSlots), keyed by the room instead of its partition, so its
// viewers reach that many gateways instead of its partition's few.
// refreshHot (js_periodic, njs 0.8.1+) reads the busiest rooms from the
// gateways' API (GET /api/rooms, js_var $hot_rooms_api) into the shared
// dict danmaku_hot (js_shared_dict_zone; its timeout forgets a room that
// cooled off). Without that zone every room goes by its partition;
// $room_viewers_per_slot 0 turns hot rooms off. pkg/route is the same
// rule in Go (the bench's router, on nginx's consistent-hash ring).

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

var hotZone = 'danmaku_hot';
var maxSlots = 64;

// hotSlots is how many slots of its own a room of online viewers gets: 0
// (its partition's) up to perSlot.
function hotSlots(online, perSlot) {
    if (!(perSlot > 0) || !(online > perSlot)) {
        return 0;
    }
    return Math.min(maxSlots, Math.ceil(online / perSlot));
}

// key is the routing key of a viewer of room: "room:R:slot" for a hot room
// (hot slots), else "partition:slot"; draw is a random number.
function key(room, parts, slots, hot, draw) {
    if (hot > 0) {
        return 'room:' + room + ':' + (draw % hot);
    }
    return partition(room, parts) + ':' + (draw % slots);
}

function hotDict() {
    return typeof ngx !== 'undefined' && ngx.shared ? ngx.shared[hotZone] : undefined;
}

// route is $room_route (see key), or the request id (spread at random)
// for a connection that names no room in its URL.
function route(r) {
    var room = r.variables.arg_room || '';
    var id = r.variables.request_id;
    if (room === '') {
        return id;
    }
    var parts = Number(r.variables.dispatch_partitions) || 12;
    var slots = Number(r.variables.room_slots) || 2;
    var d = hotDict();
    var hot = d ? Number(d.get(room)) || 0 : 0;
    return key(room, parts, slots, hot, parseInt(id.slice(-4), 16));
}

// refreshHot (js_periodic) stores the hot rooms' slots in danmaku_hot from
// GET /api/rooms ({"rooms": [{"room", "online"}]}, busiest first). A
// failed read keeps what the dict holds until its timeout.
async function refreshHot(s) {
    var d = hotDict();
    if (!d) {
        return;
    }
    var api = s.variables.hot_rooms_api || 'http://127.0.0.1:8080/api/rooms?limit=1000';
    var per = s.variables.room_viewers_per_slot;
    var perSlot = per === undefined || per === '' ? 5000 : Number(per);
    if (!(perSlot > 0)) {
        return; // 0 turns hot rooms off: what the dict holds expires
    }
    try {
        var resp = await ngx.fetch(api);
        if (resp.status !== 200) {
            throw new Error(api + ' answered ' + resp.status);
        }
        var body = await resp.json();
        var rooms = body.rooms || [];
        for (var i = 0; i < rooms.length; i++) {
            var hot = hotSlots(Number(rooms[i].online), perSlot);
            if (hot > 0) {
                d.set(String(rooms[i].room), hot);
            }
        }
    } catch (e) {
        ngx.log(ngx.WARN, 'danmaku hot rooms: ' + e);
    }
}

export default { route, refreshHot, key, hotSlots, partition, murmur2 };
