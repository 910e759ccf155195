// Geodesy on the CGCS2000 ellipsoid (a = 6378137 m, f = 1/298.257222101): geodesic length and
// area with GeographicLib (Karney's algorithms, exact to the nanometre), and the forward
// Gauss-Krüger projection used for the cursor read-out in the county's 3° zone.
import { Geodesic } from "geographiclib-geodesic";

export const CGCS2000 = { a: 6378137.0, f: 1 / 298.257222101 };
const geod = new Geodesic.Geodesic(CGCS2000.a, CGCS2000.f);

/** Geodesic length in metres of a lon/lat line [[lon, lat], …]. */
export function geodesicLength(coords) {
  let total = 0;
  for (let i = 1; i < coords.length; i++) {
    const [lon1, lat1] = coords[i - 1];
    const [lon2, lat2] = coords[i];
    total += geod.Inverse(lat1, lon1, lat2, lon2, Geodesic.DISTANCE).s12;
  }
  return total;
}

/** Geodesic area in m² of a lon/lat ring (closed or not) and its perimeter in metres. */
export function geodesicArea(ring) {
  const poly = geod.Polygon(false);
  const pts = ring.length > 1 && ring[0][0] === ring.at(-1)[0] && ring[0][1] === ring.at(-1)[1] ? ring.slice(0, -1) : ring;
  for (const [lon, lat] of pts) poly.AddPoint(lat, lon);
  const r = poly.Compute(false, true);
  return { area: Math.abs(r.area), perimeter: r.perimeter };
}

/**
 * Gauss-Krüger (transverse Mercator, scale 1 on the central meridian) forward projection on
 * CGCS2000: lon/lat in degrees → {x: northing, y: easting} in metres, false easting 500 km, no
 * zone prefix. Series to the 6th power of the longitude difference (Snyder, Map Projections – A
 * Working Manual, §8, eq. 8-9/8-10): millimetre accuracy within a 3° zone.
 */
export function gaussKruger(lon, lat, centralMeridian = 111) {
  const { a, f } = CGCS2000;
  const e2 = f * (2 - f);
  const ep2 = e2 / (1 - e2);
  const phi = (lat * Math.PI) / 180;
  const l = ((lon - centralMeridian) * Math.PI) / 180;
  const sin = Math.sin(phi), cos = Math.cos(phi), tan = Math.tan(phi);
  const N = a / Math.sqrt(1 - e2 * sin * sin);
  const T = tan * tan;
  const C = ep2 * cos * cos;
  const A = l * cos;
  const e4 = e2 * e2, e6 = e4 * e2;
  const M = a * ((1 - e2 / 4 - (3 * e4) / 64 - (5 * e6) / 256) * phi
    - ((3 * e2) / 8 + (3 * e4) / 32 + (45 * e6) / 1024) * Math.sin(2 * phi)
    + ((15 * e4) / 256 + (45 * e6) / 1024) * Math.sin(4 * phi)
    - ((35 * e6) / 3072) * Math.sin(6 * phi));
  const x = M + N * tan * (A ** 2 / 2 + ((5 - T + 9 * C + 4 * C * C) * A ** 4) / 24
    + ((61 - 58 * T + T * T + 600 * C - 330 * ep2) * A ** 6) / 720);
  const y = N * (A + ((1 - T + C) * A ** 3) / 6 + ((5 - 18 * T + T * T + 72 * C - 58 * ep2) * A ** 5) / 120) + 500000;
  return { x, y };
}

/** Central meridian of the 3° zone containing a longitude (zone = round(lon / 3)). */
export function zoneMeridian3(lon) {
  return Math.round(lon / 3) * 3;
}
