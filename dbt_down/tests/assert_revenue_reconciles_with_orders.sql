-- Upstream public models must agree with each other once consumed:
-- total net revenue (public_daily_revenue, finance schema), total order
-- amounts (public_orders) and total payments (public_order_payments, aliased)
-- are the same number. Returns a row (= failure) when they differ.

with

revenue as (

    select coalesce(sum(net_revenue), 0) as total from {{ ref('monthly_revenue') }}

),

orders as (

    select coalesce(sum(net_amount), 0) as total from {{ ref('customer_orders') }}

),

payments as (

    select coalesce(sum(net_amount), 0) as total from {{ ref('payment_method_summary') }}

)

select
    revenue.total as revenue_total,
    orders.total as orders_total,
    payments.total as payments_total

from revenue
cross join orders
cross join payments

where revenue.total != orders.total
    or payments.total != orders.total
