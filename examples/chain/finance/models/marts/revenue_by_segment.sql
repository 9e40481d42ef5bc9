with

orders as (

    select * from {{ ref('stg_orders') }}

),

segments as (

    select * from {{ ref('marketing', 'customer_segments') }}

),

final as (

    select
        segments.segment,
        count(orders.order_id) as order_count,
        coalesce(sum(orders.order_amount), 0) as revenue

    from segments

    left join orders
        on segments.customer_id = orders.customer_id

    group by segments.segment

)

select * from final
